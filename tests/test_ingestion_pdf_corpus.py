"""Born-digital and broken PDFs nobody here wrote (../shared/corpus/pdfs), in one batch loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmops.ingestion import DocumentError, IngestConfig, extract_document, inspect_document

REJECTED = {
    "empty.pdf": "empty",
    "password-example.pdf": "encrypted",
    "malformed-from-issue-932.pdf": "malformed",
}


def _all_text(pages) -> str:
    return "\n".join([p.text for p in pages] + [t.markdown for p in pages for t in p.tables])


@pytest.fixture(scope="module")
def batch(corpus_dir: Path, extracted) -> dict[str, object]:
    """Every corpus PDF through the same loop the asset runs: one failure never stops it."""
    out: dict[str, object] = {}
    for path in sorted((corpus_dir / "pdfs").glob("*.pdf")):
        try:
            out[path.name] = extracted(path)
        except DocumentError as err:
            out[path.name] = err
    return out


def test_bad_pdfs_are_rejected_with_their_code_and_the_others_succeed(batch):
    assert len(batch) >= 11
    for name, result in batch.items():
        if name in REJECTED:
            assert isinstance(result, DocumentError), name
            assert result.code == REJECTED[name], (name, result)
            assert str(result).startswith(f"{name}: ")
        else:
            assert isinstance(result, list) and result, (name, result)
            assert all(p.method == "text" for p in result), name  # good text layers: no OCR


def test_known_phrases(batch):
    fed = batch["federal-register-2020-17221.pdf"]
    assert len(fed) == 15 and [p.page_number for p in fed] == list(range(1, 16))
    fed_text = _all_text(fed)
    assert "Airworthiness Directives; The Boeing" in fed_text
    assert "Federal Aviation Administration" in fed_text
    assert all(p.language == "en" for p in fed)
    scotus = _all_text(batch["scotus-transcript-p1.pdf"])
    assert "IN THE SUPREME COURT OF THE UNITED STATES" in scotus
    assert "MICHAEL A. KNOWLES" in scotus and "No. 07-1315" in scotus
    lorem = _all_text(batch["issue-33-lorem-ipsum.pdf"])
    assert "Labore ipsum sit est. Ipsum quisquam adipisci sed dolor sed." in lorem


def test_figures_that_are_pictures_of_text_are_read(batch):
    """The rule's figures 1-9 are images of procedure text beside the digital text."""
    fed = batch["federal-register-2020-17221.pdf"]
    page7 = fed[6]
    assert "inserting a copy of figures 1 through 9" in " ".join(page7.text.split())
    assert "Recall items are minimum immediate actions" in " ".join(page7.text.split())
    assert any("figure at" in w and "OCR'd" in w for w in page7.warnings)


def test_three_column_page_is_read_column_by_column(batch):
    first = batch["federal-register-2020-17221.pdf"][0].text
    # left column sentence stays whole instead of interleaving with the middle column
    assert (
        "This section of the FEDERAL REGISTER\ncontains notices to the public of the proposed"
        in first
    )
    assert first.index("SUMMARY: The FAA proposes") < first.index("Federal eRulemaking Portal")
    # the vertical margin stamp is read upright, not as reversed one-letter words
    assert "PROPOSALS" in first and "SLASOPORP" not in first


def test_senate_expenditures_table_rows(batch):
    (page,) = batch["senate-expenditures.pdf"]
    assert len(page.tables) == 1
    rows = page.tables[0].rows
    header = rows[0]
    assert header[0] == "DOCUMENT NO." and header[-1] == "AMOUNT ($)"
    # counted on the rendered page: 10 payroll lines + 22 DHAW2019 vouchers, 2 header rows
    assert len(rows) == 34
    vouchers = [r for r in rows if r[0].startswith("DHAW2019")]
    assert len(vouchers) == 22
    payroll = [r for r in rows if not r[0] and r[2]]
    assert len(payroll) == 10
    assert payroll[0][2] == "BAIN, J MATTHEW" and payroll[0][-1] == "37,499.96"
    assert rows[-1] == [
        "DHAW20190070", "09/09/2019", "CITIBANK - TRAVEL CBA CARD", "08/12/2019", "08/14/2019",
        "STAFF TRANSPORTATION AIRFARE FOR C WEIHS WASHINGTON DC TO SPRINGFIELD AND RETURN",
        "411.49",
    ]  # fmt: skip
    # the table is not repeated in the page text
    assert "DHAW20190070" not in page.text and "BAIN" not in page.text


def test_rotated_nics_table_reads_in_rows(batch):
    (page,) = batch["nics-background-checks-2015-11-rotated.pdf"]
    assert any("rotated" in w for w in page.warnings)
    table = max(page.tables, key=lambda t: t.n_rows)
    by_state = {r[0]: r for r in table.rows}
    assert by_state["Alabama"][1:4] == ["18,870", "23,022", "22,650"]
    assert by_state["Alabama"][-1] == "71,137"
    assert by_state["Florida"][1:3] == ["15,907", "50,796"]
    assert by_state["Totals"][1] == "804,006" and by_state["Totals"][-1] == "2,236,457"
    states = [r[0] for r in table.rows]
    assert states.index("Alabama") < states.index("Alaska") < states.index("Wyoming")
    assert "Wyoming" not in page.text  # table content is not duplicated in the text


def test_arabic_rtl_table_comes_out_in_logical_order(batch):
    (page,) = batch["tabula-arabic-rtl.pdf"]
    text = _all_text([page])
    for phrase in [
        "اسمي سلطان",
        "من اين انت؟",
        "عندي 47 قطط",
        "هل انت شباك؟",
        "انا من ولاية كارولينا الشمال",
        "اسمي Jeremy في الانجليزية",
        "Jeremy is جرمي in Arabic",
    ]:
        assert phrase in text, phrase
    assert page.language == "ar"
    assert not re.search("[\ufb50-\ufdff\ufe70-\ufefc]", text)  # presentation forms folded


def test_password_pdf_opens_with_the_configured_password(corpus_dir):
    data = (corpus_dir / "pdfs" / "password-example.pdf").read_bytes()
    pages = extract_document(data, "password-example.pdf", IngestConfig(pdf_password="test"))
    assert pages and "Backup4all" in pages[0].text
    with pytest.raises(DocumentError) as err:
        extract_document(data, "password-example.pdf", IngestConfig(pdf_password="wrong"))
    assert err.value.code == "encrypted" and "pdf_password does not open it" in err.value.reason


def test_inspect_reports_kind_and_pages(corpus_dir):
    data = (corpus_dir / "pdfs" / "federal-register-2020-17221.pdf").read_bytes()
    info = inspect_document(data, "federal-register-2020-17221.pdf")
    assert info.kind == "pdf" and info.mime_type == "application/pdf"
    assert info.page_count == 15 and info.size_bytes == len(data)
    assert re.fullmatch(r"federal-register-2020-17221-[0-9a-f]{12}", info.doc_id)
    assert info.doc_id.endswith(info.sha256[:12])
