"""Tables in reading order, OCR decided by text-layer coverage, unruled tables, OCR errors.

Every PDF here is written by hand (content streams with text, rules, paths and images), so the
tests know exactly what the page holds.
"""

from __future__ import annotations

import zlib

import pytest
from PIL import Image, ImageDraw, ImageFont

from llmops.chunking import chunk_pages
from llmops.ingestion import IngestConfig, extract_document
from tests.fixtures.ingestion_docs import LATIN_FONTS, find_font, serialize_pdf

CFG = IngestConfig(ocr_dpi=200)
W, H = 612, 792


def _count_tokens(text: str) -> int:
    return len(text.split())


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_op(x: float, y_top: float, text: str, size: float = 11, bold: bool = False) -> str:
    """Text drawn with its top ``y_top`` points below the page top."""
    font = "/F2" if bold else "/F1"
    return f"BT {font} {size} Tf {x} {H - y_top - size} Td ({_esc(text)}) Tj ET\n"


def pdf_page(
    content: str, image: Image.Image | None = None, image_box: tuple[float, ...] | None = None
) -> bytes:
    """One-page PDF: Helvetica (+bold) text, paths, and optionally one grey image XObject."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>",
    ]
    xobj = ""
    if image is not None:
        grey = image.convert("L")
        x, y, w, h = image_box or (0, 0, W, H)
        content = f"q {w} 0 0 {h} {x} {y} cm /Im1 Do Q\n" + content
        xobj = " /XObject << /Im1 7 0 R >>"
    objects.append(
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {W} {H}] "
            f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >>{xobj} >> /Contents 6 0 R >>"
        ).encode()
    )
    stream = content.encode("latin-1")
    objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    if image is not None:
        raw = zlib.compress(grey.tobytes())
        objects.append(
            (
                f"<< /Type /XObject /Subtype /Image /Width {grey.width} /Height {grey.height} "
                f"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode "
                f"/Length {len(raw)} >>\nstream\n"
            ).encode()
            + raw
            + b"\nendstream"
        )
    return serialize_pdf(objects)


def ruled_table(x0: float, top: float, rows: list[list[str]], col_w: float = 120) -> str:
    """A grid-ruled table: every cell boxed, text inset by 4 pt."""
    row_h = 20
    ops = []
    n_cols = len(rows[0])
    bottom = top + row_h * len(rows)
    for r in range(len(rows) + 1):
        y = H - (top + r * row_h)
        ops.append(f"{x0} {y} m {x0 + col_w * n_cols} {y} l S\n")
    for c in range(n_cols + 1):
        x = x0 + c * col_w
        ops.append(f"{x} {H - top} m {x} {H - bottom} l S\n")
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            ops.append(text_op(x0 + c * col_w + 4, top + r * row_h + 5, cell, size=10))
    return "0.8 w\n" + "".join(ops)


PARA_A = [
    "The reservoir levels were measured at four stations during the spring survey.",
    "Each station reports its mean depth and the change since the previous year.",
]
PARA_B = [
    "Maintenance of the northern pumping station is scheduled for the autumn.",
    "Contractors were selected through the usual open tender procedure.",
]
TABLE_ROWS = [["Station", "Depth m", "Change"], ["North", "12.4", "+0.3"],
              ["South", "9.8", "-0.1"], ["East", "11.1", "+0.6"]]  # fmt: skip


def _heading_table_page() -> bytes:
    ops = [text_op(72, 72, "Reservoir Levels", size=14, bold=True)]
    y = 100
    for line in PARA_A:
        ops.append(text_op(72, y, line))
        y += 14
    ops.append(ruled_table(72, y + 16, TABLE_ROWS))
    y += 16 + 20 * len(TABLE_ROWS) + 30
    ops.append(text_op(72, y, "Pumping Stations", size=14, bold=True))
    y += 28
    for line in PARA_B:
        ops.append(text_op(72, y, line))
        y += 14
    return pdf_page("".join(ops))


# --------------------------------------------------------------------------- 1. table place


def test_table_chunk_keeps_its_heading_and_place():
    pages = extract_document(_heading_table_page(), "levels.pdf", CFG)
    (page,) = pages
    assert len(page.tables) == 1 and page.tables[0].rows[1] == ["North", "12.4", "+0.3"]
    assert page.tables[0].offset is not None
    chunks = chunk_pages([p.to_dict() for p in pages], _count_tokens, max_tokens=200)
    kinds = [(c.kind, c.heading) for c in chunks]
    table_at = next(i for i, c in enumerate(chunks) if c.kind == "table")
    assert chunks[table_at].heading == "Reservoir Levels", kinds
    b_first = next(i for i, c in enumerate(chunks) if c.heading == "Pumping Stations")
    assert table_at < b_first, kinds
    assert "North" not in " ".join(c.text for c in chunks if c.kind == "text")


def test_table_without_offset_still_follows_the_text():
    page = {"doc_id": "d", "page_number": 1, "text": "Intro\n\nSome text here.",
            "tables": [{"rows": [["a", "b"], ["1", "2"]]}]}  # fmt: skip
    chunks = chunk_pages([page], _count_tokens, max_tokens=200)
    assert [c.kind for c in chunks][-1] == "table"


# --------------------------------------------------------------------------- helpers for OCR


def _font(px: int) -> ImageFont.FreeTypeFont:
    path = find_font(LATIN_FONTS)
    if path is None:
        pytest.skip("no TrueType font to render the synthetic scan")
    return ImageFont.truetype(str(path), px)


BODY = ["Minutes of the water board meeting", "The board approved the new tariff",
        "Pipe renewal starts in the western district"]  # fmt: skip


def render_text_image(lines: list[str], dpi: int = 300, size_in: tuple[float, float] = (8.5, 6),
                      top_px: int = 300) -> Image.Image:  # fmt: skip
    """Lines of 12 pt text rendered at ``dpi`` onto white paper (a clean scan)."""
    img = Image.new("L", (int(size_in[0] * dpi), int(size_in[1] * dpi)), 255)
    draw = ImageDraw.Draw(img)
    font = _font(int(12 / 72 * dpi * 1.2))
    y = top_px
    for line in lines:
        draw.text((int(dpi), y), line, fill=0, font=font)
        y += int(font.size * 1.8)
    return img


# --------------------------------------------------------------------------- 4. OCR errors


def test_tesseract_error_quarantines_only_the_scanned_document(tmp_path, monkeypatch):
    import dagster as dg
    import pytesseract

    from assets.ingestion import extracted_pages, raw_documents
    from assets.partitions import sync_document_partitions
    from resources.documents import DocumentStoreResource
    from resources.ingestion import IngestionResource
    from resources.storage import ParquetIOManager

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "board-scan.pdf").write_bytes(pdf_page("", render_text_image(BODY, dpi=150)))
    (inbox / "levels.pdf").write_bytes(_heading_table_page())

    def broken(*args, **kwargs):
        raise pytesseract.TesseractError(1, "Error opening data file eng.traineddata")

    monkeypatch.setattr(pytesseract, "image_to_data", broken)
    docs = DocumentStoreResource(inbox=str(inbox), store=str(tmp_path / "store"),
                                 quarantine_path=str(tmp_path / "quarantine.jsonl"))  # fmt: skip
    resources = {"docs": docs, "ingestion": IngestionResource(ocr_workers=1),
                 "io_manager": ParquetIOManager(base_dir=str(tmp_path / "assets"))}  # fmt: skip
    with dg.instance_for_test() as instance:
        keys = sync_document_partitions(instance, docs).added
        results = {
            k: dg.materialize([raw_documents, extracted_pages], partition_key=k,
                              instance=instance, resources=resources, raise_on_error=False)
            for k in keys
        }  # fmt: skip
    ok = {k.split("-")[0]: r.success for k, r in results.items()}
    assert ok == {"board": False, "levels": True}
    (entry,) = docs.quarantine.entries()
    assert entry["name"] == "board-scan.pdf" and entry["code"] == "ocr_failed"
    assert "page 1" in entry["reason"] and "eng.traineddata" in entry["reason"]
    failed = next(r for k, r in results.items() if k.startswith("board"))
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert "board-scan.pdf: OCR failed on page 1" in message and "eng.traineddata" in message
    good = next(r for k, r in results.items() if k.startswith("levels"))
    assert good.output_for_node("extracted_pages")[0]["tables"]


# --------------------------------------------------------------------------- 2. coverage


STAMP = "CONFIDENTIAL  Bates ABC-000123"


def _flat(text: str) -> str:
    return " ".join(text.split()).lower()


def test_scan_with_a_digital_stamp_is_ocrd_and_keeps_the_stamp():
    scan = render_text_image(BODY, dpi=300, size_in=(8.5, 11))
    data = pdf_page(text_op(72, 750, STAMP, size=9), scan, (0, 0, W, H))
    (page,) = extract_document(data, "stamped-scan.pdf", CFG)
    assert page.method == "ocr", page.warnings
    text = _flat(page.text)
    assert "water board meeting" in text and "new tariff" in text
    assert "abc-000123" in text and text.count("abc-000123") == 1
    assert any("text layer only" in w for w in page.warnings)


def vector_text_ops(lines: list[str], px_per_pt: float = 2.0, font_pt: int = 20) -> str:
    """Text drawn only as filled rectangles (runs of dark pixels of a rendering): no chars."""
    img = Image.new("L", (int(W * px_per_pt), int(300 * px_per_pt)), 255)
    draw = ImageDraw.Draw(img)
    font = _font(int(font_pt * px_per_pt))
    y = int(72 * px_per_pt)
    for line in lines:
        draw.text((int(72 * px_per_pt), y), line, fill=0, font=font)
        y += int(font_pt * px_per_pt * 1.8)
    import numpy as np

    ink = np.asarray(img) < 128
    ops: list[str] = []
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row
    s = 1 / px_per_pt

    def close(x0: int, x1: int, r0: int, r1: int) -> None:
        ops.append(f"{x0 * s:.2f} {H - r1 * s:.2f} {(x1 - x0) * s:.2f} {(r1 - r0) * s:.2f} re f\n")

    for r in range(ink.shape[0] + 1):
        row = ink[r] if r < ink.shape[0] else np.zeros(ink.shape[1], dtype=bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        runs = set(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
        for run in list(open_runs):
            if run not in runs:
                close(run[0], run[1], open_runs.pop(run), r)
        for run in runs:
            open_runs.setdefault(run, r)
    return "0 g\n" + "".join(ops)


def test_text_drawn_as_vector_outlines_is_ocrd_not_blank():
    data = pdf_page(vector_text_ops(BODY))
    (page,) = extract_document(data, "outlined.pdf", CFG)
    assert "blank page" not in page.warnings
    assert page.method == "ocr", page.warnings
    assert any("vector paths" in w for w in page.warnings)
    assert "water board" in _flat(page.text)


def test_sparse_born_digital_page_is_not_ocrd():
    """A short note with no image and no paths keeps its text layer (coverage is no excuse)."""
    (page,) = extract_document(pdf_page(text_op(72, 72, "Note: see annex B for figures.")),
                               "note.pdf", CFG)  # fmt: skip
    assert page.method == "text" and page.text == "Note: see annex B for figures."


# --------------------------------------------------------------------------- 3. unruled tables

UNRULED = [
    ["District", "Connections", "Leaks"],
    ["Harbour", "1204", "17"],
    ["Old Town", "877", "9"],
    ["Westfield", "2310", "31"],
    ["Riverside", "1555", "12"],
]
PROSE_TEXT = (
    "The board reviewed the annual statement of accounts and noted that operating costs rose "
    "by four percent while revenue from connection fees grew more slowly than expected in the "
    "second half of the year because of delayed housing projects in the eastern districts and "
    "a wet summer that reduced demand for garden irrigation across most of the service area"
)
PROSE = PROSE_TEXT.split(" ")


def _prose_lines(words: list[str], per_line: int) -> list[str]:
    return [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]


def _unruled_page() -> bytes:
    intro = "Connections and repaired leaks per district in the last year."
    ops = [text_op(72, 72, "Network Statistics", size=14, bold=True), text_op(72, 100, intro)]
    for r, row in enumerate(UNRULED):
        for c, cell in enumerate(row):
            ops.append(text_op(72 + 150 * c, 130 + 16 * r, cell, size=10))
    return pdf_page("".join(ops))


def _two_column_prose_page() -> bytes:
    ops = [text_op(72, 60, "Annual Review", size=14, bold=True)]
    lines = _prose_lines(PROSE * 3, 6)
    half = len(lines) // 2
    for i, line in enumerate(lines[:half]):
        ops.append(text_op(72, 90 + 13 * i, line, size=10))
    for i, line in enumerate(lines[half:]):
        ops.append(text_op(320, 90 + 13 * i, line, size=10))
    return pdf_page("".join(ops))


def _justified_prose_page() -> bytes:
    """Lines spread to a fixed width with word spacing (Tw), like justified text."""
    ops = []
    for i, line in enumerate(_prose_lines(PROSE * 2, 9)):
        gaps = max(1, line.count(" "))
        ops.append(f"BT /F1 10 Tf {max(0, (440 - 4.6 * len(line)) / gaps):.2f} Tw "
                   f"72 {H - 80 - 13 * i} Td ({_esc(line)}) Tj ET\n")  # fmt: skip
    return pdf_page("".join(ops))


def test_unruled_table_is_found_in_place_and_prose_stays_text():
    (page,) = extract_document(_unruled_page(), "network.pdf", CFG)
    assert [t.rows for t in page.tables] == [UNRULED]
    assert "Westfield" not in page.text and "Connections and repaired leaks" in page.text
    chunks = chunk_pages([page.to_dict()], _count_tokens, max_tokens=200)
    (table,) = [c for c in chunks if c.kind == "table"]
    assert table.heading == "Network Statistics"
    for data, name in ((_two_column_prose_page(), "article.pdf"),
                       (_justified_prose_page(), "justified.pdf")):  # fmt: skip
        (prose,) = extract_document(data, name, CFG)
        assert prose.tables == [], name
        assert "irrigation" in prose.text, name


def test_unruled_finder_can_be_switched_off():
    cfg = IngestConfig(ocr_dpi=200, detect_unruled_tables=False)
    (page,) = extract_document(_unruled_page(), "network.pdf", cfg)
    assert page.tables == [] and "Westfield" in page.text


# --------------------------------------------------------------------------- 7. figures of text

FIGURE_LINES = ["Reservoir level alarm threshold", "Eastern pumping station capacity"]


def _page_with_figure(image: Image.Image) -> bytes:
    """Born-digital paragraph on top, ``image`` as a figure in the lower half of the page."""
    prose = "".join(text_op(72, 72 + 16 * i, line) for i, line in enumerate(BODY))
    return pdf_page(prose, image, image_box=(72, 120, 468, 300))


@pytest.mark.skipif(find_font(LATIN_FONTS) is None, reason="no TrueType font to draw the figure")
def test_figure_with_text_on_a_born_digital_page_is_ocrd():
    figure = render_text_image(FIGURE_LINES, dpi=200, size_in=(5.5, 2.5), top_px=120)
    pages = extract_document(_page_with_figure(figure), "figure.pdf", IngestConfig())
    page = pages[0]
    assert page.method == "text"  # the page keeps its text layer ...
    assert _flat(BODY[0]) in _flat(page.text)
    for line in FIGURE_LINES:  # ... and gains the figure's text
        assert _flat(line) in _flat(page.text), page.text
    assert any("figure at" in w and "OCR'd" in w for w in page.warnings), page.warnings

    off = extract_document(_page_with_figure(figure), "figure.pdf",
                           IngestConfig(ocr_figures=False))[0]  # fmt: skip
    assert _flat(FIGURE_LINES[0]) not in _flat(off.text)


def test_photo_like_figure_adds_no_text():
    """Noise (a photo, a chart's texture) gives low-confidence fragments: nothing is added."""
    import numpy as np

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, size=(500, 1100), dtype=np.uint8), "L")
    page = extract_document(_page_with_figure(noise), "photo.pdf", IngestConfig())[0]
    plain = extract_document(_page_with_figure(noise), "photo.pdf",
                             IngestConfig(ocr_figures=False))[0]  # fmt: skip
    assert page.text == plain.text


def test_text_likeness_screens_photos_before_ocr():
    import numpy as np

    from llmops.ingestion.pdf import looks_like_text

    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, size=(300, 400), dtype=np.uint8), "L")
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1)), "L")
    assert not looks_like_text(photo) and not looks_like_text(gradient)
    assert looks_like_text(render_text_image(FIGURE_LINES, dpi=100, size_in=(4, 2), top_px=40))
