"""Phone and date extraction: libraries against patterns on labelled English/Arabic snippets.

PHONE: ``llmops.entities`` (``phonenumbers`` matcher, kept when valid for the region or written
internationally) against the former hand-written regexes (kept here as the baseline) and plain
``phonenumbers`` at ``Leniency.VALID``. DATE: the ``llmops.entities`` regexes (English and
Arabic month names, Hijri months, Arabic-Indic digits) against ``dateparser.search.search_dates``
(``languages=["en", "ar"]``), scored strictly (exact surface) and leniently (one span contains
the other, so "on March 10" for "March 10, 2019" still counts).

Labels: ``tests/fixtures/text_labels/entities.json`` (phones with Arabic-Indic digits, local Saudi
and Egyptian numbers, distractors: docket numbers, ISBNs, zip codes, coordinates, references;
dates in English, Arabic, Hijri and numeric forms; distractors: "30 days", "may", "now").
Time: entity extraction runs once per chunk, so each method is timed on corpus chunks of about
1,200 characters and printed per 1k chunks and as a ratio to the former regexes.

    python bench/bench_entities.py [--quick] [-v]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELS = ROOT / "tests" / "fixtures" / "text_labels" / "entities.json"

# The phone patterns llmops.entities used before phonenumbers: the baseline being measured.
_DASH = "[-\u2010-\u2013.\\s]"
FORMER_PHONE_RES = [
    re.compile(rf"(?<![\w/])(?:\+?1{_DASH})?\(?\d{{3}}\)?{_DASH}?\d{{3}}{_DASH}\d{{4}}(?![\w/])"),
    re.compile(r"(?<![\w/])\+\d{1,3}(?:[\s.-]?\d{1,4}){2,5}(?![\w/])"),
]
Extractor = Callable[[str, str], list[str]]


def former_phones(text: str, language: str) -> list[str]:
    from llmops.entities import _find

    return [t for _, _, t in _find(FORMER_PHONE_RES, text)]


def llmops_phones(text: str, language: str) -> list[str]:
    from llmops.entities import pattern_entities

    return pattern_entities(text)["PHONE"]


def phonenumbers_valid(text: str, language: str) -> list[str]:
    import phonenumbers

    regions = ["US"] + (["SA", "AE", "EG"] if language == "ar" else [])
    spans: dict[tuple[int, int], str] = {}
    for region in regions:
        for m in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
            spans.setdefault((m.start, m.end), m.raw_string)
    return list(spans.values())


def llmops_dates(text: str, language: str) -> list[str]:
    from llmops.entities import _DATE_RES, _find

    return [t for _, _, t in _find(_DATE_RES, text)]


def dateparser_dates(text: str, language: str) -> list[str]:
    from dateparser.search import search_dates

    return [s for s, _ in search_dates(text, languages=["en", "ar"]) or []]


def _norm(s: str) -> str:
    return " ".join(s.split()).strip(" .,;:")


def score(cases: list[dict], key: str, extract: Extractor, lenient: bool, verbose: bool) -> str:
    tp = fp = fn = 0
    for case in cases:
        pred = {_norm(p) for p in extract(case["text"], case["lang"])}
        gold = {_norm(g) for g in case[key]}
        if lenient:
            hit = {p for p in pred if any(p in g or g in p for g in gold)}
            found = {g for g in gold if any(p in g or g in p for p in pred)}
        else:
            hit = found = pred & gold
        tp += len(found)
        fp += len(pred - hit)
        fn += len(gold - found)
        if verbose and (pred - hit or gold - found):
            extra, missed = sorted(pred - hit), sorted(gold - found)
            print(f"    {case['text'][:50]!r}: extra {extra} missed {missed}")
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f"P={precision:.2f} R={recall:.2f} F1={f1:.2f}"


def chunks(n: int) -> list[tuple[str, str]]:
    """Corpus text in ~1,200-character chunks, plus the Arabic labelled snippets as chunks."""
    from tests.training_data import corpus_texts

    cases = json.loads(LABELS.read_text(encoding="utf-8"))
    arabic = " ".join(c["text"] for c in cases if c["lang"] == "ar")
    out: list[tuple[str, str]] = []
    for text in corpus_texts(max_pdf_pages=40):
        flat = " ".join(text.split())
        out += [(flat[i : i + 1200], "en") for i in range(0, len(flat), 1200)]
    out += [((arabic + " ") * 2, "ar")] * max(1, len(out) // 10)  # ~10% Arabic chunks
    while len(out) < n:
        out += out
    return out[:n]


def per_1k(extract: Extractor, sample: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for text, lang in sample:
        extract(text, lang)
    return (time.perf_counter() - started) / len(sample) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="300 chunks, not 1,000")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # dateparser's pytz/regex deprecation chatter

    cases = json.loads(LABELS.read_text(encoding="utf-8"))
    sample = chunks(300 if args.quick else 1000)
    slow_sample = sample[: max(30, len(sample) // 10)]  # dateparser: extrapolated from a tenth
    print(f"{len(cases)} labelled snippets; timing on {len(sample)} chunks of ~1,200 chars")
    llmops_phones("warm up 555-0100 0551234567 ٠٥٥١٢٣٤٥٦٧", "ar")
    dateparser_dates("warm up on March 10, 2019", "en")
    print(f"{'method':38} {'strict':22} {'lenient':22} {'s/1k chunks':>11} {'ratio':>7}")
    baseline = 0.0
    rows = [
        ("PHONE former regexes (baseline)", "PHONE", former_phones, sample),
        ("PHONE llmops (phonenumbers + rules)", "PHONE", llmops_phones, sample),
        ("PHONE phonenumbers Leniency.VALID", "PHONE", phonenumbers_valid, sample),
        ("DATE llmops regexes", "DATE", llmops_dates, sample),
        ("DATE dateparser.search_dates", "DATE", dateparser_dates, slow_sample),
    ]
    for name, key, extract, timing_sample in rows:
        strict = score(cases, key, extract, False, args.verbose)
        lenient = score(cases, key, extract, True, False)
        seconds = per_1k(extract, timing_sample)
        baseline = baseline or seconds
        print(f"{name:38} {strict:22} {lenient:22} {seconds:11.2f} {seconds / baseline:6.1f}x")
    from llmops.entities import pattern_entities

    for lang in ("en", "ar"):
        part = [(t, lg) for t, lg in sample if lg == lang]
        whole = per_1k(lambda t, lang: pattern_entities(t), part)
        print(f"all pattern entities (pattern_entities), {lang} chunks: {whole:.2f} s/1k chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
