"""PDF pages -> text + tables with pdfplumber; OCR only for pages without a usable text layer.

Per page:

1. Rotation: when most characters run in another direction than left-to-right (a table page
   turned by 90 degrees in its content stream), every object is rotated so they do. Deciding by
   the characters' text matrix, not by ``/Rotate``, is what makes tables read in rows: the two
   disagree in real files (``/Rotate 90`` pages whose text is upright, and the opposite).
2. Text-layer quality (:mod:`llmops.ingestion.quality`): a page with no layer, a few stray
   characters on top of a page-sized image, or undecodable glyphs is rendered and OCR'd. So is
   a page whose characters cover almost none of it while a page-sized image or glyph-sized
   vector paths do (:func:`page_coverage`): a scan with a digital stamp, text drawn as
   outlines. The stamp's text is kept (``keep_text``) and merged with the OCR text.
3. Tables (pdfplumber ruled-table finder, then the text-alignment finder under strict rules,
   :func:`find_unruled_tables`) become structured rows; the characters inside their boxes are
   removed before the page text is built, so a table never appears twice.
4. Text: words -> lines -> column blocks. A vertical gutter that separates prose on both sides
   splits the lines between full-width lines into columns read one after the other, so a
   three-column Federal Register page does not interleave its columns.
5. Arabic: every line is ordered from glyph geometry (:func:`line_text`), right to left in an
   Arabic line with Latin runs and numbers kept left to right. Characters drawn in one glyph box
   (a lam-alef ligature decoded to two letters) keep their stream order: reversing the decoded
   string instead swaps them ("األصوات" for "الأصوات").
"""

from __future__ import annotations

import bisect
import io
import itertools
import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pdfplumber
from pdfplumber.page import DerivedPage, Page
from pdfplumber.utils.text import WordExtractor

from llmops.arabic import arabic_ratio, bidi_class, logical_from_visual
from llmops.ingestion.config import IngestConfig
from llmops.ingestion.errors import DocumentError
from llmops.ingestion.quality import text_layer_problem
from llmops.ingestion.records import TableRecord

# Word break when the gap exceeds 0.2 em: the fixed 3 pt default glues words set in small
# type (the 5 pt senate-expenditures table reads "DISTRICTDIRECTOR" with it).
X_TOLERANCE_RATIO = 0.2

# pdfminer logs every recoverable syntax problem at WARNING; they are expected on real files.
logging.getLogger("pdfminer").setLevel(logging.ERROR)

_GEOM_KEYS = ("x0", "x1", "top", "bottom")
_MIN_IMAGE_AREA = 0.05  # share of the page an image must cover to count as a possible scan


# Coverage rule (why a page with a text layer is still OCR'd): a scan carrying a digital stamp,
# or text drawn as vector outlines, shows a large image / many glyph-sized filled paths while
# its characters cover almost nothing of the page. A character count cannot tell that page
# from a sparse born-digital one; the covered areas can.
# A scan covers (nearly) the whole page; a born-digital page with a figure covering half of it
# and a caption (federal-register p. 8: 52% image, 1.4% text) is not one.
_SCAN_IMAGE_SHARE = 0.8  # image covering at least 80% of the page ...
_SPARSE_TEXT_SHARE = 0.02  # ... while the character boxes cover under 2% of it
_GLYPH_MAX_PT = 40.0  # a filled path this small in both directions may be a glyph outline
_MIN_GLYPH_PATHS = 100
_GLYPH_GRID_PT = 6.0
_MIN_VECTOR_INK_SHARE = 0.02  # grid cells touched by glyph-sized paths, share of the page


@dataclass
class PdfPageResult:
    """Text-layer outcome of one page; ``needs_ocr`` pages carry the reason instead of text.

    ``keep_text`` is the text layer of a page OCR'd for low coverage (a digital stamp on a
    scan): merged with the OCR text afterwards so it is neither lost nor doubled.
    """

    page_number: int
    text: str = ""
    tables: list[TableRecord] = field(default_factory=list)
    needs_ocr: bool = False
    warnings: list[str] = field(default_factory=list)
    keep_text: str = ""
    figures: list[tuple[float, float, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Coverage:
    """Shares of the page area covered by character boxes, images, and glyph-sized paths."""

    chars: float
    image: float
    vector_ink: float
    glyph_paths: int

    def scan_like(self) -> str | None:
        """Why the page should be OCR'd despite its text layer, or None."""
        if self.chars >= _SPARSE_TEXT_SHARE:
            return None
        if self.image >= _SCAN_IMAGE_SHARE:
            return f"image covers {self.image:.0%} of the page, text layer only {self.chars:.1%}"
        if self.glyph_paths >= _MIN_GLYPH_PATHS and self.vector_ink >= _MIN_VECTOR_INK_SHARE:
            return (
                f"{self.glyph_paths} glyph-sized vector paths cover {self.vector_ink:.0%} of the "
                f"page, text layer only {self.chars:.1%} (text drawn as outlines)"
            )
        return None


def _clipped_area(obj: dict[str, Any], bbox: tuple[float, float, float, float]) -> float:
    w = max(0.0, min(obj["x1"], bbox[2]) - max(obj["x0"], bbox[0]))
    h = max(0.0, min(obj["bottom"], bbox[3]) - max(obj["top"], bbox[1]))
    return w * h


def page_coverage(page: Page) -> Coverage:
    """How much of the page its text layer, its images and its small filled paths cover.

    Character boxes rarely overlap, so their summed area is their union; images are capped at
    the page. Glyph-sized filled paths are counted on a 6 pt grid (their union, not the sum of
    their bounding boxes, which would count overlapping outline pieces many times).
    """
    area = float(page.width * page.height) or 1.0
    bbox = page.bbox
    chars = sum(_clipped_area(c, bbox) for c in page.chars) / area
    if chars >= _SPARSE_TEXT_SHARE:  # the common born-digital page: stop before paths
        return Coverage(chars=chars, image=0.0, vector_ink=0.0, glyph_paths=0)
    image = min(1.0, sum(_clipped_area(i, bbox) for i in page.images) / area)
    glyphs = [
        o
        for o in itertools.chain(page.rects, page.curves)
        if o.get("fill")
        and o["x1"] - o["x0"] <= _GLYPH_MAX_PT
        and o["bottom"] - o["top"] <= _GLYPH_MAX_PT
    ]
    ink = 0.0
    if len(glyphs) >= _MIN_GLYPH_PATHS:
        g = _GLYPH_GRID_PT
        cells: set[tuple[int, int]] = set()
        for o in glyphs:
            for gx in range(int((o["x0"] - bbox[0]) // g), int((o["x1"] - bbox[0]) // g) + 1):
                for gy in range(
                    int((o["top"] - bbox[1]) // g), int((o["bottom"] - bbox[1]) // g) + 1
                ):
                    cells.add((gx, gy))
        ink = min(1.0, len(cells) * g * g / area)
    return Coverage(chars=chars, image=image, vector_ink=ink, glyph_paths=len(glyphs))


# --------------------------------------------------------------------------- open / validate


def _password_error(exc: BaseException) -> bool:
    names = {type(exc).__name__, type(exc.args[0]).__name__ if exc.args else ""}
    return bool(names & {"PDFPasswordIncorrect", "PDFEncryptionError", "PDFEncryptionWarning"})


def open_pdf(data: bytes, name: str, cfg: IngestConfig) -> pdfplumber.PDF:
    """Open with the configured password; map every failure to a DocumentError code."""
    try:
        pdf = pdfplumber.open(io.BytesIO(data), password=cfg.pdf_password or "")
        n_pages = len(pdf.pages)
    except Exception as err:  # pdfminer raises many unrelated types for broken files
        if _password_error(err):
            reason = (
                "PDF is encrypted and the configured pdf_password does not open it"
                if cfg.pdf_password
                else "PDF is encrypted (password-protected); set pdf_password to ingest it"
            )
            raise DocumentError(name, reason, "encrypted") from err
        raise DocumentError(name, f"malformed PDF: {_describe(err)}", "malformed") from err
    if n_pages == 0:
        pdf.close()
        raise DocumentError(name, "malformed PDF: it has no pages", "malformed")
    return pdf


def _describe(err: BaseException) -> str:
    inner = err.args[0] if err.args and isinstance(err.args[0], BaseException) else err
    msg = str(inner).strip() or type(inner).__name__
    return f"{type(inner).__name__}: {msg}" if msg != type(inner).__name__ else msg


def check_geometry(pdf: pdfplumber.PDF, name: str) -> None:
    """Reject pages whose MediaBox is inverted or empty.

    pdfplumber keeps such a box as written, so every object lands outside the page (negative
    heights, images below the page bottom) and neither tables nor crops can be trusted.
    """
    for page in pdf.pages:
        box = [float(v) for v in page.page_obj.mediabox]
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise DocumentError(
                name,
                f"malformed PDF: page {page.page_number} has an inverted or empty MediaBox "
                f"{[round(v, 2) for v in box]}",
                "malformed",
            )


# --------------------------------------------------------------------------- rotation


def _is_ltr(char: dict[str, Any]) -> bool:
    """Fast path of ``_char_direction(char) == (1, 0)`` (runs once per glyph)."""
    m = char.get("matrix")
    return not m or (m[0] > 0 and abs(m[1]) <= m[0])


def _char_direction(char: dict[str, Any]) -> tuple[int, int]:
    """Reading direction of a glyph in top-down page coordinates, snapped to a quarter turn."""
    a, b = char["matrix"][0], char["matrix"][1]
    ux, uy = a, -b  # PDF space is y-up; pdfplumber's "top" axis is y-down
    if abs(ux) >= abs(uy):
        return (1 if ux >= 0 else -1, 0)
    return (0, 1 if uy > 0 else -1)


def dominant_direction(chars: list[dict[str, Any]]) -> tuple[int, int]:
    if not chars:
        return (1, 0)
    step = max(1, len(chars) // 2000)  # a sample decides; rotated pages are all-or-nothing
    counts = Counter(_char_direction(c) for c in chars[::step] if c.get("matrix"))
    if not counts:
        return (1, 0)
    direction, n = counts.most_common(1)[0]
    return direction if n > 0.5 * sum(counts.values()) else (1, 0)


class RotatedPage(DerivedPage):
    """A page whose objects are turned so that ``direction`` becomes left-to-right."""

    def __init__(self, parent_page: Page, direction: tuple[int, int]):
        ux, uy = direction
        self._m = (ux, uy, -uy, ux)  # rotation taking (ux, uy) to (1, 0)
        x0, top, x1, bottom = parent_page.bbox
        self._origin = (x0, top)
        corners = [self._rot(x - x0, t - top) for x in (x0, x1) for t in (top, bottom)]
        self._shift = (-min(c[0] for c in corners), -min(c[1] for c in corners))
        width = max(c[0] for c in corners) + self._shift[0]
        height = max(c[1] for c in corners) + self._shift[1]
        self.bbox = (0, 0, width, height)
        super().__init__(parent_page)

    def _rot(self, x: float, t: float) -> tuple[float, float]:
        m = self._m
        return (m[0] * x + m[1] * t, m[2] * x + m[3] * t)

    def _point(self, x: float, t: float) -> tuple[float, float]:
        rx, rt = self._rot(x - self._origin[0], t - self._origin[1])
        return (rx + self._shift[0], rt + self._shift[1])

    def _transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = dict(obj)
        if all(k in obj for k in _GEOM_KEYS):
            pts = [
                self._point(x, t)
                for x in (obj["x0"], obj["x1"])
                for t in (obj["top"], obj["bottom"])
            ]
            xs, ts = [p[0] for p in pts], [p[1] for p in pts]
            height = self.bbox[3]
            out.update(
                x0=min(xs), x1=max(xs), top=min(ts), bottom=max(ts),
                width=max(xs) - min(xs), height=max(ts) - min(ts),
                y0=height - max(ts), y1=height - min(ts),
                doctop=self.initial_doctop + min(ts),
            )  # fmt: skip
        if "pts" in obj:
            out["pts"] = [self._point(x, t) for x, t in obj["pts"]]
        out.pop("path", None)
        if obj.get("object_type") == "char" and obj.get("matrix"):
            a, b, c, d, e, f = obj["matrix"]
            m = self._m
            # linear part acts on y-down vectors (a, -b) and (c, -d)
            na, nb = m[0] * a - m[1] * b, -(m[2] * a - m[3] * b)
            nc, nd = m[0] * c - m[1] * d, -(m[2] * c - m[3] * d)
            ex, et = self._point(e, self.parent_page.bbox[3] - f + self.parent_page.bbox[1])
            out["matrix"] = (na, nb, nc, nd, ex, self.bbox[3] - et)
            out["upright"] = bool(na * nd > 0 and nb * nc <= 0)
        return out

    @property
    def objects(self) -> dict[str, list[dict[str, Any]]]:
        if hasattr(self, "_objects"):
            return self._objects
        self._objects: dict[str, list[dict[str, Any]]] = {
            kind: [self._transform(o) for o in objs]
            for kind, objs in self.parent_page.objects.items()
        }
        return self._objects


# --------------------------------------------------------------------------- tables


def _cell_lines(
    row_cells: list[tuple[float, float, float, float] | None], words: list[dict[str, Any]]
) -> tuple[list[float], list[list[str]]]:
    """Text lines shared by the cells of one table row: (line tops, per cell: text per line)."""
    placed: list[tuple[int, dict[str, Any]]] = []
    for w in words:
        j = _innermost_cell(w, row_cells)
        if j is not None:
            placed.append((j, w))
    placed.sort(key=lambda p: p[1]["top"])
    tops: list[float] = []
    line_of: list[int] = []
    for _, w in placed:
        if not tops or w["top"] - tops[-1] > 3:
            tops.append(w["top"])
        line_of.append(len(tops) - 1)
    cells: list[list[list[dict[str, Any]]]] = [[[] for _ in tops] for _ in row_cells]
    for (j, w), k in sorted(zip(placed, line_of, strict=True), key=lambda p: p[0][1]["x0"]):
        cells[j][k].append(w)
    return tops, [[line_text(ws) for ws in col] for col in cells]


def _in_cell(w: dict[str, Any], bbox: tuple[float, float, float, float]) -> bool:
    cx, cy = (w["x0"] + w["x1"]) / 2, (w["top"] + w["bottom"]) / 2
    return bbox[0] <= cx < bbox[2] and bbox[1] <= cy < bbox[3]


def _innermost_cell(
    w: dict[str, Any], cells: list[tuple[float, float, float, float] | None]
) -> int | None:
    """Index of the smallest cell holding the word's centre. A frame drawn inside a cell (a
    logo box in a letterhead) makes cells that overlap; a word put in each would be read twice."""
    holding = [j for j, c in enumerate(cells) if c is not None and _in_cell(w, c)]
    return min(holding, key=lambda j: _area(cells[j]), default=None)


def _area(bbox: tuple[float, float, float, float] | None) -> float:
    return 0.0 if bbox is None else (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])


def _split_stacked_row(
    row_cells: list[tuple[float, float, float, float] | None], words: list[dict[str, Any]]
) -> list[list[str]] | None:
    """Records stacked inside one ruled row (tables that rule every 5th row, or only columns).

    Each text line of the row is a candidate record; lines with nothing in the *key* column
    (the first column with any text in reading order: the leftmost, or the rightmost when most
    words are right-to-left) continue the record above (a wrapped description).
    The split is kept only when it yields >= 2 records that fill most of the columns, so a
    header with a two-line label stays one row.
    """
    tops, grid = _cell_lines(row_cells, words)
    if len(tops) < 2:
        return None
    used = [j for j, col in enumerate(grid) if any(col)]
    if len(used) < 2:
        return None
    rtl = 2 * sum(1 for w in words if w.get("rtl")) > len(words)
    key = used[-1] if rtl else used[0]
    records: list[list[str]] = []
    for k in range(len(tops)):
        line = [grid[j][k] for j in range(len(grid))]
        if line[key] or not records:
            records.append(line)
        else:
            records[-1] = [(a + " " + b).strip() for a, b in zip(records[-1], line, strict=True)]
    if len(records) < 2:
        return None
    filled = sum(1 for r in records for j in used if r[j])
    if filled < 0.6 * len(records) * len(used):
        return None
    return records


def _column_ranges(rows: list[Any]) -> list[tuple[float, float]]:
    """x-range of every table column, from the rows where that column has its own cell."""
    n = max(len(r.cells) for r in rows)
    ranges: list[tuple[float, float]] = []
    for j in range(n):
        cells = [r.cells[j] for r in rows if j < len(r.cells) and r.cells[j] is not None]
        x0 = min((c[0] for c in cells), default=ranges[-1][1] if ranges else 0.0)
        x1 = min((c[2] for c in cells), default=x0)
        ranges.append((x0, x1))
    return ranges


def find_tables(page: Page) -> list[tuple[tuple[float, float, float, float], list[list[str]]]]:
    """Ruled tables with at least two rows and two columns and some content.

    A single framed box (1x1, or one column of boxed paragraphs) stays text: calling it a table
    would take it out of the prose it belongs to. Rows holding several records between two
    rules are split into one row per record (:func:`_split_stacked_row`).
    """
    if not page.edges:
        return []
    out = []
    for table in page.find_tables():
        rows = [r for r in _table_rows(table, page) if any(r)]
        if len(rows) < 2:
            continue
        # drop columns that are empty in every row (artifacts of merged cells)
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        keep_cols = [j for j in range(width) if any(r[j] for r in rows)]
        if len(keep_cols) < 2:
            continue
        out.append((tuple(table.bbox), [[r[j] for j in keep_cols] for r in rows]))
    return out


# Unruled tables: pdfplumber's text strategy proposes a grid wherever >= 3 words share an edge,
# which prose also does (justified text, two-column articles). A proposal becomes a table only
# when it looks like one: several rows, several columns, cells mostly filled, short cells (a
# table cell holds a value or a label, not a clause), and every column aligned at its left
# edge, right edge or centre in all its rows.
_UNRULED_SETTINGS = {
    "vertical_strategy": "text",
    "horizontal_strategy": "text",
    "min_words_vertical": 3,
    "min_words_horizontal": 2,
    "text_x_tolerance": 2,
    "text_y_tolerance": 2,
    "intersection_tolerance": 3,
}
_UNRULED_MIN_ROWS = 3
_UNRULED_MIN_FILLED = 0.75
_UNRULED_MAX_MEDIAN_WORDS = 4
_UNRULED_MAX_LONG_CELLS = 0.10  # share of cells over 6 words
_UNRULED_ALIGN_PT = 3.0
_UNRULED_MIN_GAP_PT = 6.0  # every column is separated by real white space, not a word space


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def find_unruled_tables(
    page: Page, exclude: list[tuple[float, float, float, float]]
) -> list[tuple[tuple[float, float, float, float], list[list[str]]]]:
    """Tables without ruling lines, accepted only under the strict rules above."""
    if len(page.chars) < 12:
        return []
    out = []
    for table in page.find_tables(_UNRULED_SETTINGS):
        if any(_overlaps(table.bbox, b) for b in exclude):
            continue
        accepted = _accept_unruled(table, page)
        if accepted:
            out.append(accepted)
    return out


def _accept_unruled(
    table: Any, page: Page
) -> tuple[tuple[float, float, float, float], list[list[str]]] | None:
    keep = _inside(table.bbox)
    words = sorted(_words([c for c in page.chars if keep(c)]), key=_center_y)
    centers = [_center_y(w) for w in words]
    grid: list[list[list[dict[str, Any]]]] = []  # row -> column -> words
    boxes: list[tuple[float, float, float, float]] = []
    for row in table.rows:
        _, top, _, bottom = row.bbox
        row_words = words[bisect.bisect_left(centers, top) : bisect.bisect_left(centers, bottom)]
        cells = [c for c in row.cells if c is not None]
        grid.append(
            [[w for w in row_words if c[0] <= (w["x0"] + w["x1"]) / 2 < c[2]] for c in cells]
        )
        boxes.append(tuple(row.bbox))
    # the text strategy adds empty rows between text lines: drop them
    kept = [(r, b) for r, b in zip(grid, boxes, strict=True) if any(r)]
    grid, boxes = [r for r, _ in kept], [b for _, b in kept]

    # trim title/caption/prose lines the grid swallowed above and below the table body: a row
    # with few filled cells, or whose words run across a column boundary (a sentence cut up)
    def not_a_record(r: list[list[dict[str, Any]]]) -> bool:
        filled = [c for c in r if c]
        if len(filled) < max(2, 0.5 * len(r)):
            return True
        return any(
            min(w["x0"] for w in b) - max(w["x1"] for w in a) < _UNRULED_MIN_GAP_PT
            for a, b in itertools.pairwise(filled)
        )

    while grid and not_a_record(grid[0]):
        grid.pop(0)
        boxes.pop(0)
    while grid and not_a_record(grid[-1]):
        grid.pop()
        boxes.pop()
    if len(grid) < _UNRULED_MIN_ROWS or len({len(r) for r in grid}) != 1:
        return None
    n_cols = len(grid[0])
    cols = [j for j in range(n_cols) if any(r[j] for r in grid)]
    if len(cols) < 2:
        return None
    cells = [r[j] for r in grid for j in cols]
    filled = [c for c in cells if c]
    if len(filled) < _UNRULED_MIN_FILLED * len(cells):
        return None
    counts = sorted(len(c) for c in filled)
    if counts[len(counts) // 2] > _UNRULED_MAX_MEDIAN_WORDS:
        return None
    if sum(n > 6 for n in counts) > _UNRULED_MAX_LONG_CELLS * len(counts):
        return None
    for j in cols:
        col = [r[j] for r in grid if r[j]]
        lefts = [min(w["x0"] for w in c) for c in col]
        rights = [max(w["x1"] for w in c) for c in col]
        centres = [(a + b) / 2 for a, b in zip(lefts, rights, strict=True)]
        if min(max(v) - min(v) for v in (lefts, rights, centres)) > _UNRULED_ALIGN_PT:
            return None
    for a, b in itertools.pairwise(cols):
        gaps = [
            min(w["x0"] for w in r[b]) - max(w["x1"] for w in r[a]) for r in grid if r[a] and r[b]
        ]
        if gaps and min(gaps) < _UNRULED_MIN_GAP_PT:
            return None
    rows = [[_cell_text(r[j]) for j in cols] for r in grid]
    x0 = min(w["x0"] for r in grid for c in r for w in c)
    x1 = max(w["x1"] for r in grid for c in r for w in c)
    bbox = (x0, boxes[0][1], x1, boxes[-1][3])
    return bbox, rows


def _cell_text(words: list[dict[str, Any]]) -> str:
    """One cell's text: its lines top-down, each in reading order (an Arabic cell is read from
    its glyph positions like any other line, not in the left-to-right order of its words)."""
    return " ".join(line_text(line) for line in _lines(words))


def _table_rows(table: Any, page: Page) -> list[list[str]]:
    """Cell texts from the table's words (one pass; pdfplumber's per-cell char scan is
    quadratic), with stacked records split into rows."""
    keep = _inside(table.bbox)
    words = sorted(_words([c for c in page.chars if keep(c)]), key=_center_y)
    centers = [_center_y(w) for w in words]
    columns = _column_ranges(table.rows)
    spans = [
        (bisect.bisect_left(centers, r.bbox[1]), bisect.bisect_left(centers, r.bbox[3]))
        for r in table.rows
    ]
    # each word belongs to one row: the one whose cell around it is smallest (nested frames)
    owner: dict[int, tuple[float, int]] = {}
    for i, (row_obj, (lo, hi)) in enumerate(zip(table.rows, spans, strict=True)):
        cells = list(row_obj.cells)
        for w in words[lo:hi]:
            j = _innermost_cell(w, cells)
            if j is not None and (id(w) not in owner or _area(cells[j]) < owner[id(w)][0]):
                owner[id(w)] = (_area(cells[j]), i)
    rows: list[list[str]] = []
    for i, (row_obj, (lo, hi)) in enumerate(zip(table.rows, spans, strict=True)):
        _, top, _, bottom = row_obj.bbox
        row_words = [w for w in words[lo:hi] if owner.get(id(w), (0.0, i))[1] == i]
        tops, grid = _cell_lines(list(row_obj.cells), row_words)
        if len(tops) >= 2:
            # a cell spanning several columns (no inner rules) is cut at the column bounds
            split = _split_stacked_row([(x0, top, x1, bottom) for x0, x1 in columns], row_words)
            if split:
                rows.extend(split)
                continue
        texts = [" ".join(" ".join(lines).split()) for lines in grid]
        rows.append(_text_to_widest_column(texts, list(row_obj.cells), columns))
    return rows


def _text_to_widest_column(
    texts: list[str],
    cells: list[tuple[float, float, float, float] | None],
    columns: list[tuple[float, float]],
) -> list[str]:
    """A cell spanning several columns (no rule between them in this row) gives its text to
    the widest of them, so it lines up with the same column in the other rows: a sliver
    column made by a rule that stops short of the table edge does not take the label."""
    out = list(texts)
    for j, cell in enumerate(cells):
        if cell is None or not texts[j]:
            continue
        span = [k for k, (x0, x1) in enumerate(columns)
                if x0 >= cell[0] - 1 and x1 <= cell[2] + 1 and k < len(out)]  # fmt: skip
        if len(span) < 2:
            continue
        target = max(span, key=lambda k: columns[k][1] - columns[k][0])
        if target != j and not out[target]:
            out[target], out[j] = out[j], ""
    return out


def _center_y(w: dict[str, Any]) -> float:
    return (w["top"] + w["bottom"]) / 2


def _inside(bbox: tuple[float, float, float, float]):
    x0, top, x1, bottom = bbox

    def keep(obj: dict[str, Any]) -> bool:
        cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return x0 <= cx <= x1 and top <= cy <= bottom

    return keep


def _rtl_or_mark(text: str) -> bool:
    return any(unicodedata.combining(ch) or bidi_class(ch) == "R" for ch in text)


def _is_mark(text: str) -> bool:
    return all(unicodedata.combining(ch) for ch in text)


def _same_glyph(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two characters drawn in one glyph box (a ligature split into two character objects, or
    a vowel mark placed over its letter). Only Arabic-script text and marks are grouped: an
    overprinted Latin letter keeps its current handling."""
    ta, tb = a["text"], b["text"]
    if not ta.strip() or not tb.strip() or not (_rtl_or_mark(ta) or _rtl_or_mark(tb)):
        return False
    if min(a["bottom"], b["bottom"]) <= max(a["top"], b["top"]):
        return False
    overlap = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
    narrow = min(a["x1"] - a["x0"], b["x1"] - b["x0"])
    if narrow <= 0.5:  # zero-width glyph: inside the other one's box
        return overlap >= narrow - 0.25
    return overlap >= 0.7 * narrow


def _zero_width_mark(c: dict[str, Any]) -> bool:
    return c["x1"] - c["x0"] <= 0.5 and bool(c["text"]) and _is_mark(c["text"])


def _mark_bases(chars: list[dict[str, Any]]) -> dict[int, int]:
    """Base letter (index) of each zero-width vowel mark between Arabic letters.

    A zero-width mark is drawn at the pen position, which in right-to-left text is the left
    edge of its letter (plus a small offset), so it belongs to the neighbouring letter whose
    left edge is nearest; box overlap alone would give it to the letter on its left (Word,
    XeTeX and LuaTeX all put it within a fraction of a point of both). Marks next to other
    scripts, or too far from any letter, keep the box-overlap rule."""
    bases: dict[int, int] = {}
    for i, c in enumerate(chars):
        if not _zero_width_mark(c):
            continue
        candidates = []
        for step in (-1, 1):
            k = i + step
            while 0 <= k < len(chars) and _is_mark(chars[k]["text"] or " "):
                k += step
            if 0 <= k < len(chars):
                n = chars[k]
                same_line = min(n["bottom"], c["bottom"]) > max(n["top"], c["top"])
                if same_line and bidi_class(n["text"]) == "R":
                    candidates.append((abs(c["x0"] - n["x0"]), k))
        if not candidates:
            continue
        dist, k = min(candidates)
        if dist <= 0.3 * max(float(chars[k].get("size") or 0.0), 1.0):
            bases[i] = k
    return bases


def glyph_clusters(chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Characters sharing one glyph box become one character whose text is in stream order
    (the order the producer wrote them, which is logical order inside a glyph); a mark written
    before its letter follows it, and a zero-width mark goes to its letter (:func:`_mark_bases`).
    The letter's box is kept, so a mark above the line does not move the line. A glyph drawn
    twice on the same spot (overprinted bold) counts once."""
    bases = _mark_bases(chars)
    if bases:
        marks: dict[int, str] = {}
        for i, k in bases.items():  # in stream order: shadda + fatha keep their order
            marks[k] = marks.get(k, "") + chars[i]["text"]
        chars = [
            dict(c, text=c["text"] + marks[k]) if k in marks else c
            for k, c in enumerate(chars)
            if k not in bases
        ]
    out: list[dict[str, Any]] = []
    for c in chars:
        prev = out[-1] if out else None
        if prev is None or not _same_glyph(prev, c):
            out.append(c)
            continue
        if c["text"] == prev["text"] and abs(c["x0"] - prev["x0"]) + abs(c["x1"] - prev["x1"]) < 1:
            continue  # the same glyph drawn twice (overprinted "bold"): one letter
        if _is_mark(prev["text"]) and not _is_mark(c["text"]):
            merged = dict(c, text=c["text"] + prev["text"])
        else:
            merged = dict(prev, text=prev["text"] + c["text"])
            if not _is_mark(c["text"]):
                merged.update(x0=min(prev["x0"], c["x0"]), x1=max(prev["x1"], c["x1"]))
                merged["width"] = merged["x1"] - merged["x0"]
        out[-1] = merged
    return out


def _words(chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words with their glyph clusters from left to right (``clusters``) and whether they hold
    right-to-left letters (``rtl``): the line they sit in is ordered from that geometry."""
    extractor = WordExtractor(x_tolerance_ratio=X_TOLERANCE_RATIO, y_tolerance=3)
    words = []
    for word, members in extractor.iter_extract_tuples(glyph_clusters(chars)):
        if any(bidi_class(c["text"]) == "R" for c in members):
            word["rtl"] = True
            word["clusters"] = [
                c["text"] for c in sorted(members, key=lambda c: (c["x0"] + c["x1"]) / 2)
            ]
        words.append(word)
    return words


def line_text(words: list[dict[str, Any]]) -> str:
    """Text of one line of words (sorted left to right): Arabic lines are put in logical order
    from the glyph positions, so ligatures keep their letters in order."""
    if not any(w.get("rtl") for w in words):
        return " ".join(w["text"] for w in words)
    clusters: list[str] = []
    for k, w in enumerate(words):
        if k:
            clusters.append(" ")
        clusters.extend(w.get("clusters") or list(w["text"]))
    return logical_from_visual(clusters)


def _outside(bboxes: list[tuple[float, float, float, float]]):
    def keep(obj: dict[str, Any]) -> bool:
        cx = (obj["x0"] + obj["x1"]) / 2
        cy = (obj["top"] + obj["bottom"]) / 2
        return not any(x0 <= cx <= x1 and t <= cy <= b for x0, t, x1, b in bboxes)

    return keep


# --------------------------------------------------------------------------- text layout


def _lines(words: list[dict[str, Any]], tolerance: float = 3.0) -> list[list[dict[str, Any]]]:
    """Group words into lines by their top coordinate (sorted top-down, left-to-right)."""
    lines: list[list[dict[str, Any]]] = []
    for w in sorted(words, key=lambda w: (w["top"], w["x0"])):
        if lines and abs(w["top"] - lines[-1][0]["top"]) <= tolerance:
            lines[-1].append(w)
        else:
            lines.append([w])
    for line in lines:
        line.sort(key=lambda w: w["x0"])
    return lines


def _gutters(lines: list[list[dict[str, Any]]], x0: float, x1: float) -> list[float]:
    """x positions of vertical gutters that separate columns of prose.

    A gutter is a run of at least 6pt, inside the middle 70% of the text width, that almost no
    line covers (<= 10%: full-width headings may cross it). It counts only when the text on each
    side looks like prose (>= 3 words per line segment on average, >= 20% of the width, >= 5
    lines): line numbers beside a transcript or the cells of an unruled table are not columns.
    """
    if len(lines) < 10 or x1 - x0 < 100:
        return []
    n_bins = math.ceil(x1 - x0) + 2
    diff = np.zeros(n_bins + 1, dtype=np.int32)
    for line in lines:
        for w in line:
            a = max(0, int(w["x0"] - x0))
            b = min(n_bins, math.ceil(w["x1"] - x0) + 1)
            diff[a] += 1
            diff[b] -= 1
    cover = np.cumsum(diff)[:n_bins]
    low = cover <= max(1, int(0.10 * len(lines)))
    lo, hi = int(0.15 * (x1 - x0)), int(0.85 * (x1 - x0))
    candidates: list[tuple[int, int]] = []
    start = None
    for i in range(lo, hi + 1):
        if low[i] and start is None:
            start = i
        elif not low[i] and start is not None:
            if i - start >= 6:
                candidates.append((start, i))
            start = None
    gutters = [x0 + (s + e) / 2 for s, e in candidates]
    while gutters:
        bounds = [x0, *gutters, x1]
        ok = True
        for left, right in itertools.pairwise(bounds):
            segs = [[w for w in ln if left <= (w["x0"] + w["x1"]) / 2 < right] for ln in lines]
            segs = [s for s in segs if s]
            words = sum(len(s) for s in segs)
            if len(segs) < 5 or words / len(segs) < 3 or right - left < 0.2 * (x1 - x0):
                ok = False
                break
        if ok:
            return gutters
        # drop the narrowest gutter and try again
        widths = [e - s for s, e in candidates]
        k = int(np.argmin(widths))
        gutters.pop(k)
        candidates.pop(k)
    return []


def _join_lines(lines: list[list[dict[str, Any]]]) -> str:
    """Lines -> text; a vertical gap well above the usual line pitch starts a new paragraph."""
    if not lines:
        return ""
    text_lines = [ln for ln in lines if not ln[0].get("anchor")]
    pitches = [
        b[0]["top"] - a[0]["top"]
        for a, b in itertools.pairwise(text_lines)
        if b[0]["top"] > a[0]["top"]
    ]
    pitch = float(np.median(pitches)) if pitches else 0.0
    out = [line_text(lines[0])]
    for prev, line in itertools.pairwise(lines):
        gap = line[0]["top"] - prev[0]["top"]
        new_para = (pitch and gap > 1.6 * pitch) or prev[0].get("anchor") or line[0].get("anchor")
        out.append(("\n\n" if new_para else "\n") + line_text(line))
    return "".join(out)


def table_anchor(index: int) -> str:
    """Placeholder line marking where table ``index`` stands in the text (removed later)."""
    return f"\ue000{index}\ue001"


def layout_text(
    words: list[dict[str, Any]],
    columns: bool = True,
    anchors: list[tuple[float, float, str]] | None = None,
) -> str:
    """Reading-order text: full-width lines in place, column blocks one column after another.

    ``anchors`` (x0, top, token) become lines of their own at their vertical position, so a
    table's place in the reading order survives column splitting and Arabic reordering.
    """
    lines = _lines(words)
    gutters = (
        _gutters(lines, min(w["x0"] for w in words), max(w["x1"] for w in words))
        if columns and words
        else []
    )
    for x0, top, token in anchors or []:
        pseudo = [
            {"text": token, "x0": x0, "x1": x0 + 1, "top": top, "bottom": top, "anchor": True}
        ]
        at = next((i for i, ln in enumerate(lines) if ln[0]["top"] >= top), len(lines))
        lines.insert(at, pseudo)
    if not lines:
        return ""
    if not gutters:
        return _join_lines(lines)
    bounds = [-math.inf, *gutters, math.inf]
    blocks: list[str] = []
    pending: list[list[dict[str, Any]]] = []  # lines of the current multi-column block

    def flush() -> None:
        if not pending:
            return
        for left, right in itertools.pairwise(bounds):
            col = [[w for w in ln if left <= (w["x0"] + w["x1"]) / 2 < right] for ln in pending]
            text = _join_lines([c for c in col if c])
            if text:
                blocks.append(text)
        pending.clear()

    for line in lines:
        spans = any(w["x0"] < g - 1 and w["x1"] > g + 1 for w in line for g in gutters)
        if spans:
            flush()
            blocks.append(_join_lines([line]))
        else:
            pending.append(line)
    flush()
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- per page


def _has_scan_image(page: Page) -> bool:
    area = float(page.width * page.height) or 1.0
    return any(_clipped_area(img, page.bbox) >= _MIN_IMAGE_AREA * area for img in page.images)


def figure_boxes(page: Page) -> list[tuple[float, float, float, float]]:
    """Images on a born-digital page that may be pictures of text: at least ``_MIN_IMAGE_AREA``
    of the page and an inch on each side, with (almost) no text-layer characters over them
    (a figure whose labels are digital text is already read). Boxes are (x0, top, x1, bottom)
    in points, clipped to the page."""
    area = float(page.width * page.height) or 1.0
    x0p, topp, x1p, bottomp = page.bbox
    boxes = []
    for img in page.images:
        box = (max(img["x0"], x0p), max(img["top"], topp), min(img["x1"], x1p),
               min(img["bottom"], bottomp))  # fmt: skip
        w, h = box[2] - box[0], box[3] - box[1]
        if w < 72 or h < 72 or w * h < _MIN_IMAGE_AREA * area:
            continue
        covered = sum(_clipped_area(c, box) for c in page.chars)
        if covered < _SPARSE_TEXT_SHARE * w * h:
            boxes.append(box)
    return boxes


def looks_like_text(img: Any) -> bool:
    """Cheap test before OCR: print is dark ink on light paper (mostly near-white pixels, few
    mid-tones); a photo's tones spread over the whole range. Charts pass and are read (their
    labels are text); tesseract's confidence then decides."""
    import numpy as np

    grey = np.asarray(img.convert("L"))
    if grey.size == 0:
        return False
    light = float((grey >= 200).mean())
    mid = float(((grey > 64) & (grey < 192)).mean())
    return light >= 0.5 and mid <= 0.25


def extract_text_page(page: Page, cfg: IngestConfig) -> PdfPageResult:
    """Text layer of one page, or the verdict that it needs OCR."""
    result = PdfPageResult(page_number=page.page_number)
    direction = dominant_direction(page.chars)
    if cfg.ocr_figures and direction == (1, 0) and not page.rotation:
        result.figures = figure_boxes(page)  # read by OCR unless the whole page is
    if direction != (1, 0):
        page = RotatedPage(page, direction)
        result.warnings.append(f"text runs {_dir_name(direction)}: page rotated before extraction")
    raw = "".join(c["text"] for c in page.chars)
    problem = text_layer_problem(
        raw, cfg.min_text_chars, cfg.max_bad_char_ratio, cfg.min_alnum_ratio
    )
    if problem and ("garbage" in problem or _has_scan_image(page)):
        result.needs_ocr = True
        result.warnings.append(f"{problem}: page OCR'd")
        if "garbage" not in problem and raw.strip():
            result.keep_text = layout_text(_words(page.chars), columns=False)
        return result
    scan_reason = page_coverage(page).scan_like()
    if scan_reason:
        result.needs_ocr = True
        result.warnings.append(f"{scan_reason}: page OCR'd, its text layer kept")
        result.keep_text = layout_text(_words(page.chars), columns=False) if raw.strip() else ""
        return result
    tables = find_tables(page) if cfg.detect_tables else []
    if cfg.detect_tables and cfg.detect_unruled_tables:
        tables += find_unruled_tables(page, [bbox for bbox, _ in tables])
        tables.sort(key=lambda t: (t[0][1], t[0][0]))
    # Text running in another direction (a vertical stamp in the margin) would be cut into
    # one-letter "words" inside the main lines; it is read on its own and appended instead.
    chars: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for c in page.chars:
        (chars if _is_ltr(c) else other).append(c)
    side = _side_text(page, other)
    if tables:
        keep = _outside([bbox for bbox, _ in tables])
        chars = [c for c in chars if keep(c)]
    words = _words(chars)
    anchors = [(bbox[0], bbox[1], table_anchor(i)) for i, (bbox, _) in enumerate(tables)]
    text = layout_text(words, cfg.detect_columns, anchors)
    if side:
        text = f"{text}\n\n{side}" if text else side
    records = [TableRecord(rows=rows, bbox=bbox) for bbox, rows in tables]
    if arabic_ratio(raw) > 0:
        result.warnings.append("Arabic text: characters ordered right to left from glyph positions")
    if not text.strip() and not records:
        result.warnings.append("blank page")
    result.text, result.tables = text, records
    return result


def _side_text(page: Page, chars: list[dict[str, Any]]) -> str:
    """Text of the characters that run in a minority direction, each direction turned upright."""
    if not chars:
        return ""
    blocks = []
    for direction in sorted({_char_direction(c) for c in chars}):
        turned = RotatedPage(page, direction)
        mine = [turned._transform(c) for c in chars if _char_direction(c) == direction]
        text = layout_text(_words(mine), columns=False)
        if text.strip():
            blocks.append(text)
    return "\n\n".join(blocks)


def _dir_name(direction: tuple[int, int]) -> str:
    return {(0, 1): "top-to-bottom", (0, -1): "bottom-to-top", (-1, 0): "right-to-left"}.get(
        direction, str(direction)
    )


def read_text_page(page: Page, cfg: IngestConfig) -> PdfPageResult:
    """One page's text-layer result; a page pdfminer cannot parse becomes an OCR candidate."""
    try:
        return extract_text_page(page, cfg)
    except DocumentError:
        raise
    except Exception as err:  # one broken content stream must not lose the other pages
        return PdfPageResult(
            page_number=page.page_number,
            needs_ocr=True,
            warnings=[f"text layer unreadable ({_describe(err)}): page OCR'd"],
        )
    finally:
        page.close()  # drop pdfminer's cached layout: memory stays flat on long documents


def iter_text_pages(pdf: pdfplumber.PDF, name: str, cfg: IngestConfig) -> Iterator[PdfPageResult]:
    """Text-layer results page by page, in this process."""
    for page in pdf.pages:
        yield read_text_page(page, cfg)


def text_layer_pages(data: bytes, name: str, cfg: IngestConfig) -> list[PdfPageResult]:
    """Text-layer results of every page in order, over ``cfg.page_workers`` processes when the
    PDF has at least ``MIN_PAGES_PER_WORKER`` pages per worker (:mod:`.page_workers`)."""
    from llmops.ingestion.page_workers import MIN_PAGES_PER_WORKER, read_pages
    from llmops.ocr import can_start_workers

    with open_pdf(data, name, cfg) as pdf:
        check_geometry(pdf, name)
        workers = min(cfg.page_workers, len(pdf.pages) // MIN_PAGES_PER_WORKER)
        # a daemonic host (a Dask worker) is one core of a cluster already: no fan-out there
        if workers <= 1 or not can_start_workers():
            return list(iter_text_pages(pdf, name, cfg))
        return read_pages(pdf, data, name, cfg, workers)


def render_regions(
    data: bytes, regions: list[tuple[int, tuple[float, float, float, float]]], cfg: IngestConfig,
    name: str,
) -> Iterator[Any]:
    """Grey PIL images of (1-based page, (x0, top, x1, bottom) in points) regions at
    ``cfg.ocr_dpi``: only the region is rendered (pdfium's crop, in points from each edge)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data, password=cfg.pdf_password)
    try:
        for number, (x0, top, x1, bottom) in regions:
            page = doc[number - 1]
            try:
                width, height = page.get_size()
                crop = (x0, height - bottom, width - x1, top)
                bitmap = page.render(scale=cfg.ocr_dpi / 72.0, grayscale=True, crop=crop)
                yield bitmap.to_pil()
            finally:
                page.close()
    finally:
        doc.close()


def render_pages(
    data: bytes, page_numbers: list[int], cfg: IngestConfig, name: str
) -> Iterator[Any]:
    """Grey PIL images of the given 1-based pages at ``cfg.ocr_dpi`` (pdfium honours /Rotate)."""
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(data, password=cfg.pdf_password)
    except pdfium.PdfiumError as err:
        raise DocumentError(
            name, f"malformed PDF: cannot render pages ({err})", "malformed"
        ) from err
    try:
        for number in page_numbers:
            page = doc[number - 1]
            try:
                bitmap = page.render(scale=cfg.ocr_dpi / 72.0, grayscale=True)
                yield bitmap.to_pil()
            finally:
                page.close()
    finally:
        doc.close()
