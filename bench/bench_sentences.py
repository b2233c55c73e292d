"""Sentence splitters on a labelled English/Arabic set: accuracy per splitter and time ratio.

The chunker's ``split_sentences`` (hand-written rules) against two libraries:

* ``pysbd`` 0.3.4 (Golden Rules segmenter): ``en`` for Latin-script text and ``fa`` for
  Arabic-script text (its best Arabic-script language here; ``ar`` also splits at ``،`` and
  ``:`` and ``ur`` ignores ``.``; pass ``--pysbd-arabic ar`` to see for yourself).
* spaCy's rule-based ``sentencizer`` on a blank multi-language pipeline.

Labels: ``tests/fixtures/text_labels/sentences.json`` (English abbreviations, "No. 5" and a
sentence-final "no.", "Sun." the weekday and "the sun.", numbers and decimals, initials, URLs,
legal citations; Arabic with ؟ ، ؛ :, Arabic-Indic digits, "د." initials, mixed Latin, and the
Urdu full stop ۔). A case counts only if every boundary is right. Time: the labelled set, and
corpus paragraphs (``tests.training_data.corpus_texts``) as time per 1k paragraphs and as a
ratio to ``split_sentences`` measured in the same run.

    python bench/bench_sentences.py [--quick] [--pysbd-arabic fa|ar|ur] [-v]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import best_of  # noqa: E402

LABELS = ROOT / "tests" / "fixtures" / "text_labels" / "sentences.json"

Splitter = Callable[[str], list[str]]
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_LATIN = re.compile(r"[A-Za-z]")


def pysbd_splitter(arabic_language: str) -> Splitter:
    import pysbd

    segmenters = {
        lang: pysbd.Segmenter(language=lang, clean=False) for lang in ("en", arabic_language)
    }

    def split(text: str) -> list[str]:
        arabic = len(_ARABIC.findall(text)) > len(_LATIN.findall(text))
        segmenter = segmenters[arabic_language if arabic else "en"]
        return [s.strip() for s in segmenter.segment(text) if s.strip()]

    return split


def spacy_splitter() -> Splitter:
    import spacy

    nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    return lambda text: [s.text.strip() for s in nlp(text).sents if s.text.strip()]


def paragraphs(n: int) -> list[str]:
    from tests.training_data import corpus_texts

    out: list[str] = []
    for text in corpus_texts(max_pdf_pages=40):
        for block in re.split(r"\n\s*\n", text):
            flat = " ".join(block.split())
            if len(flat) >= 80:
                out.append(flat)
    while out and len(out) < n:
        out += out
    return out[:n]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="300 corpus paragraphs, not 1,000")
    parser.add_argument("--pysbd-arabic", default="fa", choices=["fa", "ar", "ur"])
    parser.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()

    from llmops.chunking import split_sentences

    splitters: dict[str, Splitter] = {
        "llmops split_sentences": split_sentences,
        f"pysbd (en/{args.pysbd_arabic})": pysbd_splitter(args.pysbd_arabic),
        "spaCy sentencizer": spacy_splitter(),
    }
    cases = json.loads(LABELS.read_text(encoding="utf-8"))
    texts = [" ".join(c["sentences"]) for c in cases]
    corpus = paragraphs(300 if args.quick else 1000)
    chars = sum(map(len, corpus))
    print(f"{len(cases)} labelled cases; {len(corpus)} corpus paragraphs ({chars:,} chars)")
    print(
        f"{'splitter':26} {'all':>7} {'english':>8} {'arabic':>7} {'labelled ms':>12} "
        f"{'ms/1k paras':>12} {'time ratio':>10}"
    )
    baseline = None
    for name, split in splitters.items():
        right = {"all": [0, 0], "en": [0, 0], "ar": [0, 0]}
        for case, text in zip(cases, texts, strict=True):
            ok = split(text) == case["sentences"]
            for key in ("all", case["tag"].split("-")[0]):
                right[key][0] += ok
                right[key][1] += 1
            if not ok and args.verbose:
                print(f"  miss [{name}] {case['tag']}: {split(text)}")
        labelled = best_of(lambda split=split: [split(t) for t in texts], repeats=3)
        per_corpus = best_of(lambda split=split: [split(p) for p in corpus], repeats=1)
        per_1k = per_corpus / len(corpus) * 1000
        baseline = baseline or per_corpus
        acc = {k: f"{v[0] / v[1]:.0%}" for k, v in right.items()}
        print(
            f"{name:26} {acc['all']:>7} {acc['en']:>8} {acc['ar']:>7} "
            f"{labelled * 1000:12.1f} {per_1k * 1000:12.0f} {per_corpus / baseline:9.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
