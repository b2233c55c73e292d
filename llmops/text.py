"""Text helpers the domain shares: one normaliser and one markdown table renderer.

Chunk ids, grounding checks, retrieval labels and OCR error rates all compare text in a
normalised form, and tables are rendered as markdown for chunks and for asset metadata. Each
had its own copy; the copies drifted (one case-folded, one dropped soft hyphens, two table
renderers disagreed on the separator row), so they live here once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

_WS_RE = re.compile(r"\s+")
SOFT_HYPHEN = "\u00ad"


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (newlines, tabs) as one space, ends stripped: layout is not content."""
    return _WS_RE.sub(" ", text).strip()


def normalize_text(text: str, *, casefold: bool = False, drop_soft_hyphens: bool = False) -> str:
    """NFKC and collapsed whitespace; optionally case-folded and without soft hyphens.

    The plain form is what chunk ids are computed on (a re-extraction that wraps lines
    differently keeps its ids); the case-folded forms are what answers and phrases are matched
    in (models re-case words; PDF extraction leaves soft hyphens inside words).
    """
    out = unicodedata.normalize("NFKC", text)
    if drop_soft_hyphens:
        out = out.replace(SOFT_HYPHEN, "")
    if casefold:
        out = out.casefold()
    return collapse_whitespace(out)


def markdown_cell(value: Any, max_chars: int | None = None) -> str:
    """One table cell: ``None`` as empty, whitespace collapsed, pipes escaped, optionally cut."""
    text = collapse_whitespace("" if value is None else str(value))
    if max_chars is not None:
        text = text[:max_chars]
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[Any]], max_cell_chars: int | None = None) -> str:
    """GitHub markdown for ``rows`` (the first row is the header); short rows are padded.

    Used for extracted tables (their markdown goes into chunks, so the format is part of chunk
    ids: keep it stable) and for the tables in asset metadata.
    """
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    cells = [[markdown_cell(c, max_cell_chars) for c in r] + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)
