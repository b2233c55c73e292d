"""Chunker properties (hypothesis), structure handling, and bounds with the real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.chunking import chunk_pages, normalize_text, split_sentences

LABELS = Path(__file__).parent / "fixtures" / "text_labels" / "sentences.json"


def words(text: str) -> int:
    return len(text.split())


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9)
SENTENCE = st.lists(WORD, min_size=3, max_size=25).map(lambda ws: " ".join(ws).capitalize() + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=6).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(
    paragraphs=st.lists(PARAGRAPH, min_size=1, max_size=8),
    max_tokens=st.integers(min_value=30, max_value=120),
    overlap=st.integers(min_value=0, max_value=12),
)
def test_bounds_no_text_lost_and_stable_ids(paragraphs, max_tokens, overlap):
    pages = [
        {
            "doc_id": "doc",
            "page_number": 1,
            "text": "\n\n".join(paragraphs),
            "language": "en",
            "tables": [],
        }
    ]
    chunks = chunk_pages(pages, words, max_tokens=max_tokens, overlap_tokens=overlap)
    assert chunks
    assert all(0 < c.token_count <= max_tokens for c in chunks)
    assert all(c.token_count == words(c.text) for c in chunks)
    joined = normalize_text(" ".join(c.text for c in chunks))
    for sentence in (s for p in paragraphs for s in split_sentences(p)):
        if words(sentence) <= max_tokens:
            assert normalize_text(sentence) in joined  # no sentence lost
    # Duplication only from overlap: total tokens exceed the input by at most the overlaps.
    assert (
        sum(c.token_count for c in chunks)
        <= words(" ".join(paragraphs)) + overlap * len(chunks) + len(chunks) * 3
    )
    again = chunk_pages(pages, words, max_tokens=max_tokens, overlap_tokens=overlap)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_ids_change_only_for_changed_text():
    text = "First paragraph talks about water.\n\nSecond paragraph talks about money."
    page = {"doc_id": "d", "page_number": 1, "text": text, "language": "en", "tables": []}
    a = chunk_pages([page], words, max_tokens=8, overlap_tokens=0)
    b = chunk_pages(
        [{**page, "text": text.replace("money", "bonds")}], words, max_tokens=8, overlap_tokens=0
    )
    assert a[0].chunk_id == b[0].chunk_id and a[-1].chunk_id != b[-1].chunk_id


def test_headings_bound_chunks_and_are_carried():
    text = (
        "# Water quality\n\nAll samples met the standard. Turbidity averaged 0.08 NTU.\n\n"
        "# Finances\n\nOperating revenue was $96.4 million."
    )
    page = {"doc_id": "d", "page_number": 1, "text": text, "language": "en", "tables": []}
    chunks = chunk_pages([page], words, max_tokens=200, overlap_tokens=10)
    assert len(chunks) == 2
    assert "Turbidity" in chunks[0].text and "revenue" not in chunks[0].text
    assert chunks[1].heading and "Finances" in chunks[1].heading


def test_table_is_one_unit_or_split_by_rows_with_the_header():
    rows = [["State", "Permits"]] + [[f"State {i}", str(1000 + i)] for i in range(40)]
    table = {"rows": rows, "markdown": ""}
    page = {
        "doc_id": "d",
        "page_number": 3,
        "text": "Intro text here.",
        "language": "en",
        "tables": [table],
    }
    whole = [c for c in chunk_pages([page], words, max_tokens=400) if c.kind == "table"]
    assert len(whole) == 1 and "State 39" in whole[0].text
    parts = [c for c in chunk_pages([page], words, max_tokens=60) if c.kind == "table"]
    assert len(parts) > 1
    assert all("State | Permits" in c.text for c in parts)  # header repeated in every piece
    body = " ".join(c.text for c in parts)
    assert all(f"State {i} |" in body for i in range(40))
    assert all(c.page_start == 3 for c in parts)


def test_arabic_sentence_boundaries():
    """؟ ! . ۔ end Arabic-script sentences; the Arabic comma, semicolon and colon do not."""
    text = "هل انت من هنا؟ نعم، انا من المدينة؛ وصلت امس. شكرا!"
    assert split_sentences(text) == ["هل انت من هنا؟", "نعم، انا من المدينة؛ وصلت امس.", "شكرا!"]
    assert split_sentences("یہ ایک جملہ ہے۔ یہ دوسرا جملہ ہے۔") == [
        "یہ ایک جملہ ہے۔",
        "یہ دوسرا جملہ ہے۔",
    ]
    # an initial ("د." = Dr.) and an Arabic-Indic decimal do not end a sentence
    assert split_sentences("تحدث د. محمد علي عن نسبة ٤٫٥٪ أمس. ثم غادر.") == [
        "تحدث د. محمد علي عن نسبة ٤٫٥٪ أمس.",
        "ثم غادر.",
    ]
    assert split_sentences("The U.S. rate was 3.5 percent. Mr. Smith agreed.") == [
        "The U.S. rate was 3.5 percent.",
        "Mr. Smith agreed.",
    ]


def test_ambiguous_abbreviations_decide_by_the_next_word():
    """ "no." and "sun." end a sentence unless a number follows (issue 15)."""
    assert split_sentences("Please see No. 5 in the list. The answer was no. Then he left.") == [
        "Please see No. 5 in the list.",
        "The answer was no.",
        "Then he left.",
    ]
    assert split_sentences("Bring a hat for the sun. It is hot. Filing closed Sun. Jan. 5.") == [
        "Bring a hat for the sun.",
        "It is hot.",
        "Filing closed Sun. Jan. 5.",
    ]
    assert split_sentences(
        "He moved to the U.S. His family stayed in the U.S. Virgin Islands."
    ) == [
        "He moved to the U.S.",
        "His family stayed in the U.S. Virgin Islands.",
    ]
    assert split_sentences("1. The first item. 2. The second item.") == [
        "1. The first item.",
        "2. The second item.",
    ]
    assert split_sentences("It was less complex. . . . Next one.") == [
        "It was less complex. . . .",
        "Next one.",
    ]


def test_labelled_sentences():
    """The labelled English/Arabic set bench/bench_sentences.py compares splitters on."""
    cases = json.loads(LABELS.read_text(encoding="utf-8"))
    correct = 0
    for case in cases:
        text = " ".join(case["sentences"])
        pieces = split_sentences(text)
        assert " ".join(pieces) == text  # nothing lost, nothing reordered
        correct += pieces == case["sentences"]
    assert len(cases) >= 60
    assert correct / len(cases) >= 0.95, f"{correct}/{len(cases)} labelled cases split right"


def test_an_over_long_sentence_is_cut_at_clauses_first():
    clauses = [" ".join(f"كلمة{i}{j}" for j in range(8)) for i in range(6)]
    sentence = "، ".join(clauses) + "."
    page = {"doc_id": "ar", "page_number": 1, "text": sentence, "language": "ar", "tables": []}
    chunks = chunk_pages([page], words, max_tokens=20, overlap_tokens=0)
    assert len(chunks) == 3
    assert all(c.text.endswith(("،", ".")) for c in chunks)
    assert " ".join(c.text for c in chunks) == sentence


def test_real_tokenizer_bounds_on_corpus_text(corpus_dir):
    import pdfplumber

    from llmops.embedding import Embedder

    embedder = Embedder()
    with pdfplumber.open(corpus_dir / "pdfs" / "federal-register-2020-17221.pdf") as pdf:
        pages = [
            {
                "doc_id": "fr",
                "page_number": i + 1,
                "text": p.extract_text() or "",
                "language": "en",
                "tables": [],
            }
            for i, p in enumerate(pdf.pages[:3])
        ]
    chunks = chunk_pages(pages, embedder.count_tokens, max_tokens=128, overlap_tokens=16)
    assert len(chunks) > 5
    assert all(embedder.count_tokens(c.text) <= 128 for c in chunks)
    assert {c.page_start for c in chunks} == {1, 2, 3}


def test_repeated_text_gets_distinct_deterministic_ids():
    text = "# A\n\nSame words here.\n\n# B\n\nOther words.\n\n# A\n\nSame words here."
    page = {"doc_id": "d", "page_number": 1, "text": text, "language": "en", "tables": []}
    chunks = chunk_pages([page], words, max_tokens=50, overlap_tokens=0)
    assert chunks[0].text == chunks[2].text
    assert chunks[0].chunk_id != chunks[2].chunk_id
    again = chunk_pages([page], words, max_tokens=50, overlap_tokens=0)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]


def test_overlap_is_whole_sentences_and_long_sentences_are_hard_split():
    sentences = [f"Sentence {i} has exactly six words." for i in range(12)]
    long = " ".join(f"w{i}" for i in range(70)) + "."
    text = " ".join(sentences) + " " + long
    page = {"doc_id": "d", "page_number": 1, "text": text, "language": "en", "tables": []}
    chunks = chunk_pages([page], words, max_tokens=20, overlap_tokens=6)
    assert all(c.token_count <= 20 for c in chunks)
    # consecutive chunks share a whole sentence
    assert "Sentence 2 has exactly six words." in chunks[0].text
    assert chunks[1].text.startswith("Sentence 2 has exactly six words.")
    body = " ".join(c.text for c in chunks)
    assert all(f"w{i}" in body.split() or f"w{i}." in body for i in range(70))


def test_pdf_heading_guess_and_arabic_page():
    text = (
        "Introductory line of the report.\n"
        "ESTIMATED COSTS\n"
        "We estimate that this proposed AD affects 62 airplanes of U.S. registry.\n"
    )
    page = {"doc_id": "fr", "page_number": 2, "text": text, "language": "en", "tables": []}
    chunks = chunk_pages([page], words, max_tokens=50, overlap_tokens=0)
    assert chunks[-1].heading == "ESTIMATED COSTS" and "62 airplanes" in chunks[-1].text
    assert "ESTIMATED COSTS" not in chunks[0].text
    ar = {
        "doc_id": "ar",
        "page_number": 1,
        "text": "هل انت من هنا؟ نعم، انا من المدينة.",
        "language": "ar",
        "tables": [],
    }
    (only,) = chunk_pages([ar], words, max_tokens=50)
    assert only.language == "ar" and "المدينة" in only.text and only.heading is None
