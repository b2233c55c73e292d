"""DOCX, plain text and HTML: documents that carry their text as text, no OCR involved."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any

from llmops.ingestion.detect import decode_text
from llmops.ingestion.errors import DocumentError
from llmops.ingestion.records import TableRecord

_HEADING_RE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


@dataclass
class TextPage:
    """Text and tables of one logical page before normalisation."""

    text: str
    tables: list[TableRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- DOCX


def _paragraph_markdown(paragraph: Any) -> str:
    """Paragraph text with a markdown marker for headings/titles/lists, so the chunker sees
    structure that would otherwise live only in the style name."""
    text = paragraph.text.strip()
    if not text:
        return ""
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    m = _HEADING_RE.match(style.strip())
    if m:
        return "#" * max(1, min(6, int(m.group(1)))) + " " + text
    if style.strip().lower() == "title":
        return "# " + text
    if style.strip().lower().startswith("list"):
        return "- " + text
    return text


def _cell_text(cell: Any) -> str:
    """Cell content in order, nested tables included (``cell.text`` silently drops them)."""
    from docx.table import Table

    parts: list[str] = []
    for block in cell.iter_inner_content():
        if isinstance(block, Table):
            parts.extend(" | ".join(c for c in row if c) for row in _table_rows(block))
        else:
            parts.append(block.text)
    return " ".join(" ".join(parts).split())


def _table_rows(table: Any) -> list[list[str]]:
    """Rows of cell texts; a merged cell (python-docx repeats it per grid column) counts once."""
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(_cell_text(cell))
        rows.append(cells)
    return rows


def extract_docx(data: bytes, name: str) -> list[TextPage]:
    """Body content in document order: paragraphs and tables interleaved.

    The text carries each non-empty table as an inline markdown table at its place in the body
    (the chunker recognises it and keeps it whole) and the same table is also in ``tables`` as
    rows; empty tables are skipped with a warning.
    """
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as err:  # python-docx raises KeyError/ValueError/lxml errors on damage
        raise DocumentError(
            name, f"malformed DOCX: {type(err).__name__}: {err}", "malformed"
        ) from err
    parts: list[str] = []
    tables: list[TableRecord] = []
    warnings: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [r for r in _table_rows(block) if any(r)]
            if not rows:
                warnings.append(f"empty table skipped (body position {len(parts) + 1})")
                continue
            record = TableRecord(rows=rows)
            tables.append(record)
            parts.append(record.markdown)
        else:
            text = _paragraph_markdown(block)
            if text:
                parts.append(text)
    return [TextPage(text="\n\n".join(parts), tables=tables, warnings=warnings)]


# --------------------------------------------------------------------------- TXT


def extract_txt(data: bytes, name: str) -> tuple[list[TextPage], str]:
    """Decoded text split at form feeds (the plain-text page break); returns the encoding too."""
    decoded = decode_text(data)
    if decoded is None:
        raise DocumentError(name, "cannot determine the text encoding", "unsupported")
    text, encoding = decoded
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    pages = [TextPage(text=p.strip("\n")) for p in text.split("\f")]
    while len(pages) > 1 and not pages[-1].text.strip():
        pages.pop()
    return pages, encoding


# --------------------------------------------------------------------------- HTML


def _html_tables(tree: Any) -> list[TableRecord]:
    out = []
    for table in tree.iter("table"):
        if any(True for _ in table.iterancestors("table")):
            continue  # nested tables are part of their parent's cell text
        rows = []
        for tr in table.iter("tr"):
            cells = [" ".join(td.text_content().split()) for td in tr if td.tag in ("td", "th")]
            if any(cells):
                rows.append(cells)
        if len(rows) >= 2 and max(len(r) for r in rows) >= 2:
            out.append(TableRecord(rows=rows))
    return out


def _strip_html(tree: Any) -> str:
    """Fallback: visible text of the body, one block element per paragraph."""
    for bad in tree.xpath("//script|//style|//noscript|//template|//head"):
        bad.drop_tree()
    blocks = []
    for el in tree.iter("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td"):
        text = " ".join(el.text_content().split())
        if text:
            level = int(el.tag[1]) if el.tag[0] == "h" and el.tag[1:].isdigit() else 0
            blocks.append(("#" * level + " " if level else "") + text)
    if not blocks:
        blocks = [" ".join(tree.text_content().split())]
    return "\n\n".join(dict.fromkeys(blocks))


def extract_html(data: bytes, name: str) -> list[TextPage]:
    """Main text via trafilatura (boilerplate removed, headings as markdown); tables as rows.

    Short pages are where trafilatura's boilerplate filter misfires (it can drop everything), so
    when it returns little we fall back to the visible text of the body.
    """
    import lxml.html
    import trafilatura

    decoded = decode_text(data)
    if decoded is None:
        raise DocumentError(name, "cannot determine the HTML encoding", "unsupported")
    # lxml refuses a str that still carries an ``<?xml ... encoding=...?>`` declaration (XHTML);
    # the bytes are already decoded with that encoding, so the declaration has done its job.
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", decoded[0], count=1)
    warnings: list[str] = []
    try:
        tree = lxml.html.fromstring(html)
    except Exception as err:  # lxml raises ParserError on empty documents
        raise DocumentError(name, f"malformed HTML: {err}", "malformed") from err
    tables = _html_tables(tree)
    main = trafilatura.extract(
        html,
        output_format="markdown",
        include_tables=False,
        include_comments=False,
        favor_recall=True,
        with_metadata=False,
    )
    fallback = _strip_html(lxml.html.fromstring(html))
    if not main or (len(main) < 0.25 * len(fallback) and len(main) < 500):
        if main is not None:
            warnings.append("main-text extraction kept too little: used the full visible text")
        main = fallback
    return [TextPage(text=main.strip(), tables=tables, warnings=warnings)]
