"""Entity extraction on real corpus pages and on English and Arabic samples."""

from __future__ import annotations

import json
from pathlib import Path

from llmops.entities import ENTITY_TYPES, entity_counts, extract_entities, pattern_entities


def test_patterns_in_english():
    text = (
        "On November 3, 2015 the U.S. Department of Justice paid $1,234.56 (12.5%) to "
        "Mr. John Smith in Texas. Call (202) 555-0142 or write to info@doj.gov, see "
        "https://www.fbi.gov/nics."
    )
    e = extract_entities(text, "en")
    assert set(e) == set(ENTITY_TYPES)
    assert e["DATE"] == ["November 3, 2015"]
    assert e["MONEY"] == ["$1,234.56"]
    assert e["PERCENT"] == ["12.5%"]
    assert e["EMAIL"] == ["info@doj.gov"]
    assert e["URL"] == ["https://www.fbi.gov/nics"]
    assert e["PHONE"] == ["(202) 555-0142"]
    assert "John Smith" in e["PERSON"]
    assert "Texas" in e["LOCATION"]


def test_patterns_in_arabic():
    e = extract_entities("في 12 يناير 2025 دفعت الهيئة 500 ريال بنسبة 30٪ إلى الدكتور أحمد.", "ar")
    assert e["DATE"] == ["12 يناير 2025"]
    assert e["MONEY"] == ["500 ريال"]
    assert e["PERCENT"] == ["30٪"]


def test_real_federal_register_page(corpus_dir):
    import pdfplumber

    with pdfplumber.open(corpus_dir / "pdfs" / "federal-register-2020-17221.pdf") as pdf:
        text = pdf.pages[0].extract_text()
    e = extract_entities(text, "en")
    assert "August 6, 2020" in e["DATE"]
    assert "https://www.regulations.gov" in e["URL"]
    assert "202–493–2251" in e["PHONE"]
    assert "14 CFR Part 39" in e["LEGAL_REF"]
    assert "Des Moines" in e["LOCATION"]
    counts = entity_counts([e])
    assert counts["DATE"] >= 3 and counts["URL"] >= 2


def test_real_senate_table_dates(corpus_dir):
    import pdfplumber

    with pdfplumber.open(corpus_dir / "pdfs" / "senate-expenditures.pdf") as pdf:
        text = pdf.pages[0].extract_text()
    assert "05/03/2019" in extract_entities(text, "en")["DATE"]


LABELS = Path(__file__).parent / "fixtures" / "text_labels" / "entities.json"


def _labelled() -> list[dict]:
    return json.loads(LABELS.read_text(encoding="utf-8"))


def test_labelled_phones_and_dates():
    """The labelled English/Arabic snippets bench/bench_entities.py compares libraries on."""
    cases = _labelled()
    assert sum(len(c["PHONE"]) for c in cases) >= 15 and sum(len(c["DATE"]) for c in cases) >= 15
    for case in cases:
        found = pattern_entities(case["text"])
        for key in ("PHONE", "DATE"):
            assert sorted(found[key]) == sorted(case[key]), (key, case["text"])


def test_phones_with_arabic_indic_digits_and_local_numbers():
    found = pattern_entities("للاستفسار: ٠٥٥١٢٣٤٥٦٧ أو +٩٦٦ ١١ ٤٥٦ ٧٨٩٠ أو 0223456789.")["PHONE"]
    assert found == ["٠٥٥١٢٣٤٥٦٧", "+٩٦٦ ١١ ٤٥٦ ٧٨٩٠", "0223456789"]
    # counts, references and serials are not phones, in either script
    assert pattern_entities("بلغ عدد السكان ١٢٣٤٥٦٧٨٩٠ نسمة، والقضية ٤٥٦٧/٢٠٢٠.")["PHONE"] == []
    assert pattern_entities("Serial 4155552671X, ISBN 978-3-16-148410-0, zip 98198.")["PHONE"] == []
    # a US number in English text needs no region hint
    assert pattern_entities("Dial 415.555.2671 today.")["PHONE"] == ["415.555.2671"]
