"""The shared normaliser and markdown table renderer (llmops.text)."""

from __future__ import annotations

from llmops.chunking import chunk_id_for
from llmops.dataset import normalize
from llmops.ingestion.records import TableRecord
from llmops.ocr import normalize_for_cer
from llmops.text import collapse_whitespace, markdown_table, normalize_text


def test_normalize_text_forms():
    text = "  The ﬁle\tco\u00adoperates\n WITH  Ｕnicode "
    assert normalize_text(text) == "The file co\u00adoperates WITH Unicode"
    assert normalize_text(text, casefold=True) == "the file co\u00adoperates with unicode"
    assert normalize_text(text, casefold=True, drop_soft_hyphens=True) == (
        "the file cooperates with unicode"
    )
    assert collapse_whitespace(" a \n\n b\t") == "a b"


def test_callers_share_the_one_normaliser():
    """Chunk ids ignore wrapping; grounding ignores case; CER ignores layout."""
    assert chunk_id_for("d", "one  two\nthree") == chunk_id_for("d", "one two three")
    assert normalize("Ａ  B\nc") == normalize_text("Ａ  B\nc", casefold=True) == "a b c"
    assert normalize_for_cer("مرحبا \n  بكم") == "مرحبا بكم"


def test_markdown_table_escapes_pads_and_cuts():
    rows = [["a", "b|c"], ["1"], [None, "x\n y"]]
    assert markdown_table(rows) == "| a | b\\|c |\n|---|---|\n| 1 |  |\n|  | x y |"
    assert markdown_table([["h"], ["abcdef"]], max_cell_chars=3) == "| h |\n|---|\n| abc |"
    assert markdown_table([]) == ""
    # extracted tables and re-rendered chunk slices use the same rendering
    assert TableRecord(rows=rows).markdown == markdown_table(rows)
