"""Arabic text clean-up: presentation forms, visual order, optional letter folding, language id.

Born-digital Arabic PDFs frequently store *glyphs* (presentation forms U+FB50-U+FEFF) laid out in
*visual* order, so the raw extracted text neither matches what a user types nor tokenises like
Arabic. OCR output has the opposite problems (stray bidi marks, Arabic-Indic digits). Everything
downstream (chunking, embeddings, retrieval, the CER metric) sees text through
:func:`normalize_arabic`, so there is exactly one definition of "clean Arabic" in the project.
"""

from __future__ import annotations

import itertools
import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

TATWEEL = "\u0640"
# Harakat, tanween, shadda, sukun, superscript alef, Quranic annotation marks.
_DIACRITICS_RE = re.compile(
    "[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]"
)
# Invisible direction controls (LRM, RLM, ALM, embeddings, overrides, isolates): OCR engines and
# word processors sprinkle them into text; they break exact matching and carry no content.
_BIDI_CONTROLS = dict.fromkeys(
    map(ord, "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
_UNIFY = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"})
_DIGITS = str.maketrans(
    {**{chr(0x0660 + i): str(i) for i in range(10)}, **{chr(0x06F0 + i): str(i) for i in range(10)}}
)
_ARABIC_LETTER_RE = re.compile("[\u0620-\u064a\u0671-\u06d3\ufb50-\ufdff\ufe70-\ufefc]")
_LATIN_LETTER_RE = re.compile("[A-Za-z\u00c0-\u024f]")


@dataclass(frozen=True)
class ArabicConfig:
    """Which irreversible folds to apply; the defaults keep meaning and only drop layout noise."""

    remove_tatweel: bool = True
    remove_diacritics: bool = False
    unify_letters: bool = False
    unify_digits: bool = True
    remove_bidi_controls: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | ArabicConfig | None) -> ArabicConfig:
        """Build from config dicts, ignoring unknown keys so older configs keep loading."""
        if data is None:
            return cls()
        if isinstance(data, ArabicConfig):
            return data
        known = {f.name for f in fields(cls)}
        return cls(**{k: bool(v) for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


DEFAULT_CONFIG = ArabicConfig()


def normalize_arabic(text: str, cfg: ArabicConfig | None = None) -> str:
    """Fold presentation forms (NFKC) and apply the configured removals.

    NFKC also expands the lam-alef ligatures (U+FEF5-U+FEFC) into two letters, so call
    :func:`fix_visual_order` *before* this when the text is still in visual order. Non-Arabic text
    only sees NFKC (ligatures such as "ﬁ" become "fi"), which is what search needs anyway.
    """
    cfg = cfg or DEFAULT_CONFIG
    if not text:
        return text
    out = unicodedata.normalize("NFKC", text)
    if cfg.remove_bidi_controls:
        out = out.translate(_BIDI_CONTROLS)
    if cfg.remove_tatweel:
        out = out.replace(TATWEEL, "")
    if cfg.remove_diacritics:
        out = _DIACRITICS_RE.sub("", out)
    if cfg.unify_letters:
        out = out.translate(_UNIFY)
    if cfg.unify_digits:
        out = out.translate(_DIGITS)
    return out


# --------------------------------------------------------------------------- visual order


@lru_cache(maxsize=1)
def _joining_table() -> dict[str, tuple[bool, bool]]:
    """Presentation-form glyph -> (joins to previous letter, joins to next letter), logical order.

    Derived from the Unicode decomposition tags (<initial>, <medial>, <final>, <isolated>) so no
    hand-written table can drift from the standard.
    """
    table: dict[str, tuple[bool, bool]] = {}
    for cp in [*range(0xFB50, 0xFDFF + 1), *range(0xFE70, 0xFEFC + 1)]:
        ch = chr(cp)
        tag = unicodedata.decomposition(ch).split(" ", 1)[0]
        if tag == "<initial>":
            table[ch] = (False, True)
        elif tag == "<medial>":
            table[ch] = (True, True)
        elif tag == "<final>":
            table[ch] = (True, False)
        elif tag == "<isolated>":
            table[ch] = (False, False)
    return table


def _is_arabic_letter(ch: str) -> bool:
    return bool(_ARABIC_LETTER_RE.match(ch))


def _order_evidence(text: str) -> tuple[int, int]:
    """Count observations consistent with logical order vs. with reversed (visual) order.

    Two independent signals, both measurable on any Arabic text:

    * Glyph joining: in logical order, a letter whose glyph joins to the *next* letter must be
      followed by one that joins to the *previous*, words start with a glyph that does not join
      backwards and end with one that does not join forwards. Reversal swaps these roles.
    * Letter position (works without presentation forms): taa marbuta (ة) and alef maksura (ى)
      occur only word-finally, and the article "ال" word-initially; reversed text shows them at
      the other end of the word.
    """
    table = _joining_table()
    logical = visual = 0
    for word in re.findall("[\u0600-\u06ff\ufb50-\ufdff\ufe70-\ufefc]+", text):
        letters = [c for c in word if _is_arabic_letter(c)]
        if not letters:
            continue
        forms = [table.get(c) for c in letters]
        # word edges (only glyphs with a positional form tell us anything)
        first, last = forms[0], forms[-1]
        if first is not None and first != (True, True):
            logical += not first[0]
            visual += not first[1]
        if last is not None and last != (True, True):
            logical += not last[1]
            visual += not last[0]
        for a, b in itertools.pairwise(forms):
            if a is None or b is None:
                continue
            logical += a[1] == b[0]
            visual += a[0] == b[1]
        base = unicodedata.normalize("NFKC", "".join(letters))
        if len(base) >= 3:
            logical += base[-1] in "ةى"
            visual += base[0] in "ةى"
        if len(base) >= 4:
            logical += base.startswith("ال")
            visual += base.endswith("لا")
    return logical, visual


def looks_visual_order(text: str, min_margin: int = 3) -> bool:
    """True when the Arabic in ``text`` reads as reversed (visual order) rather than logical.

    Decided by :func:`_order_evidence`: visual wins by at least ``min_margin`` observations and
    by a 2:1 ratio, so a few ambiguous words never flip a correctly ordered page.
    """
    logical, visual = _order_evidence(text)
    return visual - logical >= min_margin and visual >= 2 * logical


def _strong_direction(ch: str) -> str | None:
    kind = unicodedata.bidirectional(ch)
    if kind in ("R", "AL"):
        return "R"
    if kind == "L":
        return "L"
    return None


def _visual_base_dir(line: str) -> str:
    """Paragraph direction of a visual-order line.

    An RTL paragraph starts at the right edge, so its first logical character is the *last*
    strong character of the visual string; an LTR paragraph starts at the left. When the two
    edges disagree the line is genuinely ambiguous (layout alone would tell), so the script with
    more letters wins.
    """
    dirs = [d for d in map(_strong_direction, line) if d]
    if not dirs:
        return "L"
    if dirs[-1] == "R" and dirs[0] == "R":
        return "R"
    if dirs[-1] == "L" and dirs[0] == "L":
        return "L"
    return "R" if dirs.count("R") >= dirs.count("L") else "L"


def fix_visual_order(text: str, base_dir: str = "auto") -> str:
    """Turn visual-order lines back into logical order, line by line.

    The Unicode bidi reordering (python-bidi) maps logical to visual order; for a line without
    explicit embeddings it is its own inverse, so applying it to a visual line with the right
    paragraph direction reverses the RTL runs while Latin words and numbers ("Jeremy", "47") keep
    their left-to-right order, and mirrored brackets are mirrored back. Lines without RTL letters
    are returned unchanged. Run this before :func:`normalize_arabic` (lam-alef ligatures are one
    glyph here, two letters after NFKC).
    """
    from bidi import get_display

    if base_dir not in ("auto", "R", "L", "rtl", "ltr"):
        raise ValueError(f"base_dir must be auto, R or L, got {base_dir!r}")
    fixed = []
    for line in text.split("\n"):
        if not any(_strong_direction(c) == "R" for c in line):
            fixed.append(line)
            continue
        direction = {"rtl": "R", "ltr": "L"}.get(base_dir, base_dir)
        if direction == "auto":
            direction = _visual_base_dir(line)
        fixed.append(get_display(line, base_dir=direction))
    return "\n".join(fixed)


# --------------------------------------------------------------------------- language id

DEFAULT_LANGUAGES: tuple[str, ...] = (
    "en",
    "ar",
    "fr",
    "de",
    "es",
    "it",
    "pt",
    "nl",
    "fa",
    "ur",
    "tr",
)
# Languages written in Arabic script that lingua knows: a mostly-Arabic-script text is one of
# these, never English or French, whatever the statistics of a short sample say.
ARABIC_SCRIPT_LANGUAGES: frozenset[str] = frozenset({"ar", "fa", "ur"})
_detector_lock = threading.Lock()


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]) -> Any:
    """lingua detector restricted to ``languages``: building it is the slow part, so once only."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in languages]
    with _detector_lock:
        return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()


def arabic_ratio(text: str) -> float:
    """Share of letters that are Arabic script (0 when the text has no letters)."""
    arabic = len(_ARABIC_LETTER_RE.findall(text))
    latin = len(_LATIN_LETTER_RE.findall(text))
    other = sum(1 for c in text if c.isalpha()) - arabic - latin
    total = arabic + latin + max(other, 0)
    return arabic / total if total else 0.0


def detect_language(
    text: str,
    languages: tuple[str, ...] | list[str] = DEFAULT_LANGUAGES,
    min_letters: int = 12,
    min_confidence: float = 0.5,
) -> str:
    """ISO 639-1 code of the dominant language, or "und" when too short or unclear.

    Text that is mostly Arabic script is one of the Arabic-script languages (Arabic, Persian,
    Urdu): the detector is restricted to those, so Persian and Urdu are recognised as such even
    when spelled with Arabic letters, and a few Latin words on an Arabic page do not flip it.
    """
    letters = sum(1 for c in text if c.isalpha())
    if letters < min_letters:
        return "und"
    langs = tuple(sorted({code.lower() for code in languages}))
    if arabic_ratio(text) >= 0.8:
        # Arabic script: only its languages compete. OCR output spells Persian and Urdu with
        # Arabic yeh/kaf (the ara model has no Persian letters), so the letters alone cannot
        # tell them apart; lingua's word statistics can ("در", "می", "است", "کے", "ہے").
        script = tuple(code for code in langs if code in ARABIC_SCRIPT_LANGUAGES)
        if script == ("ar",) or (not script and "ar" in langs):
            return "ar"
        if script:
            langs = script
    sample = text if len(text) <= 4000 else text[:4000]
    detector = _detector(langs)
    values = detector.compute_language_confidence_values(sample)
    if not values or values[0].value < min_confidence:
        return "und"
    return values[0].language.iso_code_639_1.name.lower()


# --------------------------------------------------------------------------- glyph geometry

_MIRRORED = str.maketrans("()[]{}<>«»", ")(][}{><»«")


def bidi_class(text: str) -> str:
    """Direction class of a glyph cluster: "R" (Arabic/Hebrew letter), "L" (Latin and other LTR
    letters), "N" (digit) or "W" (space, punctuation): its first character that has one."""
    for ch in text:
        kind = unicodedata.bidirectional(ch)
        if kind in ("R", "AL"):
            return "R"
        if kind == "L":
            return "L"
        if kind in ("EN", "AN"):
            return "N"
    return "W"


def _runs(classes: list[str], start: str, inner: str) -> list[list[int]]:
    """Indices grouped into units: maximal runs that begin and end with a ``start`` class and
    hold only ``start``/``inner`` classes in between; every other index is a unit of its own."""
    units: list[list[int]] = []
    i, n = 0, len(classes)
    while i < n:
        if classes[i] not in start:
            units.append([i])
            i += 1
            continue
        last = k = i
        while k < n and classes[k] in start + inner:
            if classes[k] in start:
                last = k
            k += 1
        units.append(list(range(i, last + 1)))
        i = last + 1
    return units


def logical_from_visual(clusters: list[str], base_dir: str = "auto") -> str:
    """Logical-order text of one line given its glyph clusters from left to right.

    Each cluster is the text of one glyph box, already in logical order (a lam-alef ligature is
    one glyph for two letters; reversing the decoded string would swap them, which is why this
    works on clusters and not on characters). In a right-to-left line the clusters are read from
    the right, except runs of Latin letters and digits (with the spaces and punctuation between
    them), which keep their left-to-right order; in a left-to-right line, runs of Arabic (with
    the numbers inside them) are the ones read from the right. Brackets read right-to-left are
    mirrored back, as the bidi algorithm mirrored them for display.
    """
    if base_dir not in ("auto", "R", "L"):
        raise ValueError(f"base_dir must be auto, R or L, got {base_dir!r}")
    classes = [bidi_class(c) for c in clusters]
    if "R" not in classes:
        return "".join(clusters)
    if base_dir == "auto":
        strong = [c for c in classes if c in "RL"]
        if strong[0] == strong[-1]:
            base_dir = strong[0]
        else:
            base_dir = "R" if strong.count("R") >= strong.count("L") else "L"
    out: list[str] = []
    if base_dir == "R":
        for unit in reversed(_runs(classes, "LN", "W")):
            if len(unit) == 1 and classes[unit[0]] == "W":
                out.append(clusters[unit[0]].translate(_MIRRORED))
            else:
                out.extend(clusters[i] for i in unit)
        return "".join(out)
    for unit in _runs(classes, "R", "WN"):
        if classes[unit[0]] != "R":
            out.extend(clusters[i] for i in unit)
            continue
        # an Arabic run inside a left-to-right line: read from the right, numbers kept LTR
        inner = [unit[0] + k for k in range(len(unit))]
        sub = _runs([classes[i] for i in inner], "N", "W")
        for part in reversed(sub):
            idx = [inner[k] for k in part]
            if len(idx) == 1 and classes[idx[0]] == "W":
                out.append(clusters[idx[0]].translate(_MIRRORED))
            else:
                out.extend(clusters[i] for i in idx)
    return "".join(out)


# --------------------------------------------------------------------------- search form

_SEARCH_CONFIG = ArabicConfig(remove_diacritics=True, unify_letters=True)
_ARABIC_WORD_RE = re.compile("[\u0621-\u064a\u0671-\u06d3]+")
# Larkey, Ballesteros & Connell, "Light Stemming for Arabic Information Retrieval" (2007):
# "light10", the stemmer Lucene's ArabicStemmer follows. Letters are unified first (ة -> ه,
# ى -> ي, alef forms -> ا), so the suffix list needs no ة / ى variants.
_LIGHT10_ARTICLES = ("وال", "بال", "كال", "فال", "ال", "لل")
_LIGHT10_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")


def light_stem(word: str) -> str:
    """Light10 stem of one normalised Arabic word: drop the conjunction و, one definite
    article, then suffixes, each only while at least two letters remain."""
    if len(word) >= 4 and word.startswith("و"):
        word = word[1:]
    for article in _LIGHT10_ARTICLES:
        if word.startswith(article) and len(word) - len(article) >= 2:
            word = word[len(article) :]
            break
    for suffix in _LIGHT10_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            word = word[: -len(suffix)]
    return word


def search_form(text: str) -> str:
    """Text as the full-text index sees it, for documents and queries alike.

    Arabic-script words are normalised (NFKC, no diacritics or tatweel, unified letters) and
    light-stemmed, so "والانتخابات" matches "انتخابات"; other words are left to the index's own
    tokenizer and English stemmer, which leave Arabic letters untouched.
    """
    if not text or not _ARABIC_LETTER_RE.search(text):
        return text
    text = normalize_arabic(text, _SEARCH_CONFIG)
    return _ARABIC_WORD_RE.sub(lambda m: light_stem(m.group()), text)
