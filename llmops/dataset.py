"""Instruction dataset: grounded instruction/response pairs from chunks, split by document.

A fine-tuned model learns whatever its pairs say, so a pair whose answer is not in its context
teaches it to invent. Every generator (the deterministic :class:`OfflineGenerator`, or the
AutoGen team in :mod:`llmops.agents`) therefore goes through one filter whose grounding rule
is mechanical (:func:`is_grounded`): each answer sentence, table cell or entity value must occur
in the context after whitespace and case normalisation. A critic model saying "looks fine" is
not evidence; a substring test is.

Splits are by *document* (a paraphrase of a training chunk in the test split would inflate every
score), and the version is a content hash, so an unchanged corpus gives the same version and the
training asset can skip work.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from llmops.chunking import split_sentences
from llmops.text import normalize_text

COLUMNS = (
    "instruction",
    "context",
    "response",
    "task",
    "doc_id",
    "chunk_id",
    "language",
    "generator",
)
SPLITS = ("train", "validation", "test")
TASKS = ("qa", "summarize", "extract_entities", "table_lookup")

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
_TABLE_LINE = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_DECLARATIVE_END = (".", "!", "۔")  # a sentence that states something, not a question or label
# Longer "sentences" are nearly always extraction artefacts (two PDF columns read across) or
# run-on legal text; as a QA answer they teach the model to ramble.
_MAX_SENTENCE_WORDS = 60

# Function words never chosen as the "topic" of a question.
_STOP_EN = """a an and are as at be been being but by can could did do does for from had has have he
her his i if in into is it its may might must no not of on or our shall she should so such than
that the their them then there these they this those to under upon us was we were what when where
which while who will with would you your also any all each other more most only same said herein
thereof hereby"""
_STOP_AR = """في من على إلى الى عن أن ان التي الذي الذين هذا هذه ذلك تلك كان كانت هو هي مع قد لا
ما كما أو او ثم"""
_STOP = frozenset(_STOP_EN.split() + _STOP_AR.split())


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstructionExample:
    """One training row; flat strings so it maps 1:1 onto a `datasets` table and MLflow."""

    instruction: str
    context: str
    response: str
    task: str  # qa | summarize | extract_entities | table_lookup
    doc_id: str
    chunk_id: str
    language: str = "en"
    generator: str = "offline"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class PairGenerator(Protocol):
    """Anything that turns one chunk (+ its entities) into candidate pairs; filtering is ours."""

    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]: ...


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """The form grounding compares on: NFKC, case-folded, whitespace collapsed.

    Re-extraction wraps lines differently and models re-case words; neither changes whether an
    answer is supported by the passage.
    """
    return normalize_text(text, casefold=True)


def _unescape_cell(cell: str) -> str:
    return cell.replace("\\|", "|").strip()


def parse_markdown_table(text: str) -> list[list[str]]:
    """Rows of the first markdown table in ``text`` (header first), pipes unescaped."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if _TABLE_LINE.match(line):
            if _TABLE_SEP.match(line):
                continue
            cells = _CELL_SPLIT.split(line.strip())
            rows.append([_unescape_cell(c) for c in cells[1:-1]])
        elif rows:
            break  # the table ended; a second table is a different chunk's business
    return rows


def _prose_sentences(text: str, heading: str) -> list[str]:
    """Sentences of the body: markdown headings, the chunk's heading line and tables dropped."""
    body = [
        ln
        for ln in text.splitlines()
        if not ln.lstrip().startswith("#") and not _TABLE_LINE.match(ln)
    ]
    head = normalize(heading) if heading else ""
    return [
        s
        for s in split_sentences("\n".join(body))
        if normalize(s) != head and len(_WORD.findall(s)) >= 4
    ]


def _is_declarative(sentence: str) -> bool:
    words = _WORD.findall(sentence)
    letters = sum(ch.isalpha() for ch in sentence)
    return (
        6 <= len(words) <= _MAX_SENTENCE_WORDS
        and len(sentence) >= 30
        and letters >= 0.6 * len(sentence.replace(" ", ""))
        and sentence.rstrip("\"'”’»)]").endswith(_DECLARATIVE_END)
    )


def _tfidf_scores(sentences: Sequence[str]) -> list[float]:
    """Mean TF-IDF weight per sentence, IDF over the chunk's own sentences.

    Sentences made of words that occur everywhere in the passage (boilerplate, connectives)
    score low; the ones that carry the passage's specific content score high.
    """
    docs = [Counter(w for w in _WORD.findall(s.casefold()) if w not in _STOP) for s in sentences]
    df = Counter(w for d in docs for w in d)
    n = len(docs)
    scores = []
    for d in docs:
        total = sum(d.values())
        weight = sum(c * math.log(1 + n / df[w]) for w, c in d.items())
        scores.append(weight / math.sqrt(total) if total else 0.0)
    return scores


def _seeded_order(items: Sequence[Any], seed: int, key: str) -> list[Any]:
    """A deterministic order that differs per chunk, so templates do not all start the same."""
    return sorted(
        items, key=lambda it: hashlib.sha256(f"{seed}\x00{key}\x00{it}".encode()).hexdigest()
    )


# --------------------------------------------------------------------------------------------
# Offline generator
# --------------------------------------------------------------------------------------------

_TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "qa_about": "According to the document{where}, what is stated about {topic}?",
        "qa_cloze": (
            "Fill in the blank and give the complete sentence as it appears in the document"
            '{where}: "{cloze}"'
        ),
        "summarize": (
            "Summarise the passage{where} in {n} sentence(s), using sentences from the passage."
        ),
        "extract_entities": (
            "List the {types} mentioned in the passage, one per line as TYPE: value."
        ),
        "table_lookup": "In the table{where}, what is {column} for {row}?",
        "where": ' (section "{heading}")',
        "where_table": ' "{heading}"',
    },
    "ar": {
        "qa_about": "وفقًا للوثيقة{where}، ماذا ورد بشأن «{topic}»؟",
        "qa_cloze": "املأ الفراغ واكتب الجملة كاملة كما وردت في الوثيقة{where}: «{cloze}»",
        "summarize": "لخّص النص{where} في {n} جملة مستخدمًا جملًا من النص نفسه.",
        "extract_entities": "استخرج {types} المذكورة في النص، كل واحدة في سطر بصيغة TYPE: value.",
        "table_lookup": "في الجدول{where}، ما قيمة «{column}» لـ «{row}»؟",
        "where": " (قسم «{heading}»)",
        "where_table": " «{heading}»",
    },
}

_TYPE_NAMES: dict[str, dict[str, str]] = {
    "en": {
        "DATE": "dates",
        "MONEY": "monetary amounts",
        "PERCENT": "percentages",
        "EMAIL": "e-mail addresses",
        "URL": "URLs",
        "PHONE": "phone numbers",
        "LEGAL_REF": "legal references",
        "PERSON": "people",
        "ORG": "organisations",
        "LOCATION": "locations",
    },
    "ar": {
        "DATE": "التواريخ",
        "MONEY": "المبالغ المالية",
        "PERCENT": "النسب المئوية",
        "EMAIL": "عناوين البريد الإلكتروني",
        "URL": "الروابط",
        "PHONE": "أرقام الهواتف",
        "LEGAL_REF": "المراجع القانونية",
        "PERSON": "الأشخاص",
        "ORG": "المؤسسات",
        "LOCATION": "الأماكن",
    },
}
_MAX_ENTITY_LINES = 12


@dataclass
class OfflineGenerator:
    """Deterministic, network-free and grounded by construction: answers are copied text.

    The pairs are not as varied as a model's, but they cost nothing, need no endpoint, and
    give the fine-tuning smoke path (and CI) a real dataset whose answers are checkable.
    """

    seed: int = 13
    max_per_chunk: int = 4
    qa_per_chunk: int = 2
    name: str = "offline"

    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]:
        text = str(chunk.get("text") or "")
        if not text.strip():
            return []
        language = str(chunk.get("language") or "en")
        tpl = _TEMPLATES["ar" if language.split("-")[0].lower() == "ar" else "en"]
        heading = _WS.sub(" ", str(chunk.get("heading") or "")).strip()
        key = str(chunk.get("chunk_id") or "")

        def make(task: str, instruction: str, response: str) -> InstructionExample:
            return InstructionExample(
                instruction=instruction,
                context=text,
                response=response,
                task=task,
                doc_id=str(chunk.get("doc_id") or ""),
                chunk_id=key,
                language=language,
                generator=self.name,
            )

        if chunk.get("kind") == "table":
            pairs = self._table_pairs(text, heading, tpl, key)
            return [make("table_lookup", q, a) for q, a in pairs][: self.max_per_chunk]

        out: list[InstructionExample] = []
        where = tpl["where"].format(heading=heading) if heading else ""
        sentences = _prose_sentences(text, heading)
        scores = _tfidf_scores(sentences) if sentences else []
        entity_values = [v for vals in entities.values() for v in vals if v]

        declarative = [i for i, s in enumerate(sentences) if _is_declarative(s)]
        ranked = sorted(declarative, key=lambda i: (-scores[i], i))[: self.qa_per_chunk]
        for i in ranked:
            qa = self._qa(sentences[i], sentences, entity_values, where, tpl, key)
            if qa:
                out.append(make("qa", qa, sentences[i]))

        if len(sentences) >= 3:
            k = max(1, min(3, math.ceil(len(sentences) / 3)))
            best = sorted(sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:k])
            summary = " ".join(sentences[i] for i in best)
            out.append(make("summarize", tpl["summarize"].format(where=where, n=k), summary))

        extraction = self._entity_pair(text, entities, tpl, language)
        if extraction:
            out.append(make("extract_entities", *extraction))
        return out[: self.max_per_chunk]

    # -- question forms ---------------------------------------------------------------------

    def _topic(self, sentence: str, sentences: Sequence[str], entity_values: Sequence[str]) -> str:
        """The most specific term of the sentence: an entity in it, else its rarest content word.

        Rarest within the chunk, so the question points at *this* sentence and not its
        neighbours (which would make the single-sentence answer incomplete).
        """
        folded = normalize(sentence)
        for value in sorted(entity_values, key=lambda v: (-len(v), v)):
            if len(value) >= 3 and normalize(value) in folded:
                return value
        df = Counter(w for s in sentences for w in set(_WORD.findall(s.casefold())))
        words = [
            w
            for w in _WORD.findall(sentence)
            if w.casefold() not in _STOP and len(w) >= 4 and not w.isdigit()
        ]
        if not words:
            return ""
        return min(words, key=lambda w: (df[w.casefold()], -len(w), words.index(w)))

    def _qa(
        self,
        sentence: str,
        sentences: Sequence[str],
        entity_values: Sequence[str],
        where: str,
        tpl: Mapping[str, str],
        key: str,
    ) -> str | None:
        topic = self._topic(sentence, sentences, entity_values)
        if not topic:
            return None
        form = _seeded_order(["qa_about", "qa_cloze"], self.seed, f"{key}\x00{sentence}")[0]
        if form == "qa_cloze" and topic in sentence:
            cloze = sentence.replace(topic, "____", 1)
            return tpl["qa_cloze"].format(where=where, cloze=cloze)
        return tpl["qa_about"].format(where=where, topic=topic)

    def _table_pairs(
        self, text: str, heading: str, tpl: Mapping[str, str], key: str
    ) -> list[tuple[str, str]]:
        """Cell lookups keyed by (row's first cell, column header), both unambiguous."""
        rows = parse_markdown_table(text)
        if len(rows) < 2:
            return []
        header, body = rows[0], rows[1:]
        keys = Counter(r[0] for r in body if r)
        headers = Counter(header)
        candidates = []
        for r, row in enumerate(body):
            if not row or not row[0] or keys[row[0]] > 1:
                continue
            for c in range(1, min(len(row), len(header))):
                column, cell = header[c], row[c]
                if column and headers[column] == 1 and len(cell) >= 2 and cell != row[0]:
                    candidates.append((r, c))
        # At most one question per row; rows in a seeded order, each asking about the column
        # used least so far, so the questions cover the table instead of one column.
        by_row: dict[int, list[int]] = {}
        for r, c in candidates:
            by_row.setdefault(r, []).append(c)
        chosen: list[tuple[int, int]] = []
        used: Counter[int] = Counter()
        for r in _seeded_order(sorted(by_row), self.seed, key)[: self.max_per_chunk]:
            cols = _seeded_order(by_row[r], self.seed, f"{key}\x00{r}")
            c = min(cols, key=lambda col: used[col])
            used[c] += 1
            chosen.append((r, c))
        where = tpl["where_table"].format(heading=heading) if heading else ""
        return [
            (
                tpl["table_lookup"].format(where=where, column=header[c], row=body[r][0]),
                body[r][c],
            )
            for r, c in sorted(chosen)
        ]

    @staticmethod
    def _entity_pair(
        text: str, entities: Mapping[str, Sequence[str]], tpl: Mapping[str, str], language: str
    ) -> tuple[str, str] | None:
        # A value must sit inside one paragraph: a rule-based NER span that runs from the
        # heading into the body ("Overview The Department") is not an entity of the passage.
        paragraphs = [normalize(p) for p in re.split(r"\n\s*\n", text) if p.strip()]
        names = _TYPE_NAMES["ar" if language.split("-")[0].lower() == "ar" else "en"]
        lines: list[str] = []
        types: list[str] = []
        seen: set[tuple[str, str]] = set()
        for etype in sorted(entities):
            for value in entities[etype]:
                value = _WS.sub(" ", str(value)).strip()
                ident = (etype.upper(), normalize(value))
                found = any(ident[1] in p for p in paragraphs)
                if not value or ident in seen or not found:
                    continue  # only values the reader can find in the passage
                seen.add(ident)
                lines.append(f"{etype.upper()}: {value}")
                if etype.upper() not in types:
                    types.append(etype.upper())
        if not lines:
            return None
        lines = lines[:_MAX_ENTITY_LINES]
        types = [t for t in types if any(ln.startswith(f"{t}: ") for ln in lines)]
        joiner = "، " if tpl is _TEMPLATES["ar"] else ", "
        readable = joiner.join(names.get(t, t.lower()) for t in types)
        return tpl["extract_entities"].format(types=readable), "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Grounding and filtering
# --------------------------------------------------------------------------------------------


def is_grounded(example: InstructionExample) -> bool:
    """True when every piece of the answer occurs in the context (normalised).

    * qa / summarize: every sentence of the response is a substring of the context;
    * extract_entities: every line is ``TYPE: value`` and the value is in the context;
    * table_lookup: the response is a cell of the context's table (or, without a parseable
      table, a substring of the context).
    """
    context = normalize(example.context)
    response = example.response.strip()
    if not context or not response:
        return False
    if example.task == "extract_entities":
        lines = [ln.strip() for ln in response.splitlines() if ln.strip()]
        for line in lines:
            etype, sep, value = line.partition(":")
            if not sep or not etype.strip() or not value.strip():
                return False
            if normalize(value) not in context:
                return False
        return bool(lines)
    if example.task == "table_lookup":
        rows = parse_markdown_table(example.context)
        if rows:
            cells = {normalize(c) for row in rows[1:] for c in row}
            return normalize(response) in cells
        return normalize(response) in context
    pieces = [p for line in response.splitlines() for p in split_sentences(line)] or [response]
    return all(normalize(p) in context for p in pieces if p.strip())


@dataclass
class BuildConfig:
    """Dataset build knobs; the defaults suit a small corpus and a LoRA smoke run."""

    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 13
    max_examples_per_chunk: int = 4
    min_instruction_chars: int = 10
    max_response_chars: int = 1500
    min_response_chars: int = 2


def _near_key(example: InstructionExample) -> str:
    """Instruction + response with case, punctuation and spacing removed."""
    words = " ".join(_WORD.findall(normalize(example.instruction)))
    answer = " ".join(_WORD.findall(normalize(example.response)))
    return hashlib.sha256(f"{words}\x00{answer}".encode()).hexdigest()


def filter_examples(
    examples: Iterable[InstructionExample], cfg: BuildConfig | None = None
) -> tuple[list[InstructionExample], dict[str, int]]:
    """One gate for every generator: fields, lengths, grounding, then (near-)duplicates.

    Duplicates are checked last so a grounded copy is not counted as ungrounded; the first
    occurrence (in input order, which the builder makes deterministic) is the one kept.
    """
    cfg = cfg or BuildConfig()
    kept: list[InstructionExample] = []
    rejected: Counter[str] = Counter()
    exact: set[tuple[str, ...]] = set()
    near: set[str] = set()
    for ex in examples:
        if not all(str(getattr(ex, c) or "").strip() for c in COLUMNS):
            rejected["empty_field"] += 1
        elif ex.task not in TASKS:
            rejected["unknown_task"] += 1
        elif len(ex.instruction.strip()) < cfg.min_instruction_chars:
            rejected["instruction_too_short"] += 1
        elif len(ex.response.strip()) < cfg.min_response_chars:
            rejected["response_too_short"] += 1
        elif len(ex.response.strip()) > cfg.max_response_chars:
            rejected["response_too_long"] += 1
        elif not is_grounded(ex):
            rejected["ungrounded"] += 1
        else:
            ident = (ex.instruction, ex.response, ex.context)
            nkey = _near_key(ex)
            if ident in exact:
                rejected["duplicate"] += 1
            elif nkey in near:
                rejected["near_duplicate"] += 1
            else:
                exact.add(ident)
                near.add(nkey)
                kept.append(ex)
    return kept, dict(sorted(rejected.items()))


# --------------------------------------------------------------------------------------------
# Splitting and versioning
# --------------------------------------------------------------------------------------------


def _unit(doc_id: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}\x00{doc_id}".encode()).hexdigest()[:15], 16) / 16**15


def split_by_document(
    examples: Sequence[InstructionExample],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 13,
) -> dict[str, list[InstructionExample]]:
    """Whole documents go to one split; the split of a document depends only on its id.

    Rule: each doc_id hashes (with ``seed``) to u in [0, 1); u < r_train -> train,
    u < r_train + r_val -> validation, else test. Hashing per document (instead of slicing a
    sorted list) keeps a document in its split when others are added. Small corpora are then
    repaired so that train has >= 1 document; with >= 2 documents test has >= 1; with >= 3
    validation has >= 1 too (a split whose ratio is 0 is left empty). A repair moves the
    document whose u is nearest the missing split's interval, out of the largest split.
    """
    r_train, r_val, r_test = (float(r) for r in ratios)
    total = (r_train + r_val + r_test) or 1.0
    r_train, r_val = r_train / total, r_val / total
    docs = sorted({e.doc_id for e in examples})
    u = {d: _unit(d, seed) for d in docs}
    assign: dict[str, str] = {}
    for d in docs:
        assign[d] = (
            "train" if u[d] < r_train else "validation" if u[d] < r_train + r_val else "test"
        )

    centre = {
        "train": r_train / 2,
        "validation": r_train + r_val / 2,
        "test": (1 + r_train + r_val) / 2,
    }
    required = ["train"] if docs else []
    if len(docs) >= 2 and r_test > 0:
        required.append("test")
    if len(docs) >= 3 and r_val > 0:
        required.append("validation")
    for target in required:
        members = {s: [d for d in docs if assign[d] == s] for s in SPLITS}
        if members[target]:
            continue
        donors = [
            s for s in SPLITS if s != target and len(members[s]) > (1 if s in required else 0)
        ]
        if not donors:
            continue
        donor = max(donors, key=lambda s: (len(members[s]), s))
        moved = min(members[donor], key=lambda d: (abs(u[d] - centre[target]), d))
        assign[moved] = target

    out: dict[str, list[InstructionExample]] = {s: [] for s in SPLITS}
    for ex in examples:
        out[assign[ex.doc_id]].append(ex)
    return out


def _canonical(example: InstructionExample | Mapping[str, Any]) -> str:
    data = example.to_dict() if isinstance(example, InstructionExample) else dict(example)
    return json.dumps(
        {c: str(data.get(c, "")) for c in COLUMNS}, sort_keys=True, ensure_ascii=False
    )


def dataset_version(splits: Mapping[str, Sequence[InstructionExample | Mapping[str, Any]]]) -> str:
    """16 hex of sha256 over the canonical JSON of every split's sorted examples.

    Sorting makes the version independent of generation order; including the split name
    means moving a document between splits is a new version (it changes what is evaluated).
    """
    payload = {s: sorted(_canonical(e) for e in splits.get(s, [])) for s in SPLITS}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


@dataclass
class DatasetBuild:
    dataset_dict: Any  # datasets.DatasetDict with train / validation / test
    version: str
    stats: dict[str, Any] = field(default_factory=dict)


def to_dataset_dict(splits: Mapping[str, Sequence[InstructionExample]]) -> Any:
    """A DatasetDict with all three splits and string columns, even when a split is empty."""
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({c: Value("string") for c in COLUMNS})
    return DatasetDict(
        {
            s: Dataset.from_dict(
                {c: [getattr(e, c) for e in splits.get(s, [])] for c in COLUMNS},
                features=features,
            )
            for s in SPLITS
        }
    )


def build_instruction_dataset(
    chunks: Sequence[Mapping[str, Any]],
    entities_by_chunk: Mapping[str, Mapping[str, Sequence[str]]],
    generator: PairGenerator,
    cfg: BuildConfig | None = None,
) -> DatasetBuild:
    """Generate -> filter -> split -> version. A chunk the generator fails on is counted only.

    Chunks are visited in (doc_id, ordinal, chunk_id) order so the kept-first duplicate rule,
    and hence the version, does not depend on the order the caller loaded them in.
    """
    cfg = cfg or BuildConfig()
    generated: list[InstructionExample] = []
    errors: list[str] = []
    ordered = sorted(
        chunks,
        key=lambda c: (str(c.get("doc_id")), int(c.get("ordinal") or 0), str(c.get("chunk_id"))),
    )
    for chunk in ordered:
        cid = str(chunk.get("chunk_id"))
        try:
            pairs = generator.generate(chunk, entities_by_chunk.get(cid, {}) or {})
        except Exception as exc:  # an endpoint hiccup on one chunk must not lose the batch
            errors.append(f"{cid}: {type(exc).__name__}: {exc}"[:200])
            continue
        generated.extend(list(pairs)[: cfg.max_examples_per_chunk])

    kept, rejected = filter_examples(generated, cfg)
    splits = split_by_document(kept, cfg.split, cfg.seed)
    stats: dict[str, Any] = {
        "chunks": len(chunks),
        "generated": len(generated),
        "kept": len(kept),
        "rejected": rejected,
        "generator_errors": len(errors),
        "generator_error_samples": errors[:5],
        "tasks": dict(sorted(Counter(e.task for e in kept).items())),
        "languages": dict(sorted(Counter(e.language for e in kept).items())),
        "rows": {s: len(splits[s]) for s in SPLITS},
        "documents": {s: len({e.doc_id for e in splits[s]}) for s in SPLITS},
    }
    extra = getattr(generator, "stats", None)
    if isinstance(extra, Mapping):
        stats["generator_stats"] = dict(extra)
    return DatasetBuild(to_dataset_dict(splits), dataset_version(splits), stats)


# --------------------------------------------------------------------------------------------
# Checks and tracking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    message: str
    severity: str = "error"  # "error" blocks training, "warn" is shown only


def _columns(dsdict: Mapping[str, Any], split: str) -> dict[str, list[str]]:
    """Column lists of a split, from a `datasets.Dataset` or a list of row dicts."""
    if split not in dsdict:
        return {c: [] for c in COLUMNS}
    data = dsdict[split]
    if hasattr(data, "column_names"):
        return {
            c: [str(v or "") for v in data[c]] if c in data.column_names else [] for c in COLUMNS
        }
    rows = list(data)
    return {c: [str(r.get(c) or "") for r in rows] for c in COLUMNS}


def check_dataset(
    dsdict: Mapping[str, Any], min_train: int = 20, min_leak_chars: int = 20
) -> list[CheckOutcome]:
    """The checks guarding the hand-off to training: ``no_empty_fields``, ``no_leakage``,
    ``minimum_size``.

    Leakage is a doc_id in two splits, or the same context or response text in two splits.
    Responses shorter than ``min_leak_chars`` (normalised) are exempt: a table cell such as
    "2015" or "Total" legitimately recurs across documents and memorising it leaks nothing.
    """
    cols = {s: _columns(dsdict, s) for s in SPLITS}
    n_rows = {s: max(len(v) for v in cols[s].values()) if cols[s] else 0 for s in SPLITS}

    empty: list[str] = []
    for s in SPLITS:
        for c in COLUMNS:
            values = cols[s][c]
            if len(values) < n_rows[s]:
                empty.append(f"{s}: column {c!r} missing")
                continue
            empty += [f"{s}[{i}].{c}" for i, v in enumerate(values) if not v.strip()]

    leaks: list[str] = []
    for c in ("doc_id", "context", "response"):
        owner: dict[str, str] = {}
        for s in SPLITS:
            for value in {normalize(v) for v in cols[s][c]}:
                if not value or (c == "response" and len(value) < min_leak_chars):
                    continue
                if value in owner and owner[value] != s:
                    leaks.append(f"{c} in {owner[value]} and {s}: {value[:50]!r}")
                owner.setdefault(value, s)

    n_train = n_rows["train"]
    return [
        CheckOutcome(
            "no_empty_fields",
            not empty,
            f"{len(empty)} empty field(s), e.g. {empty[:3]}"
            if empty
            else f"all {sum(n_rows.values())} rows have every field",
        ),
        CheckOutcome(
            "no_leakage",
            not leaks,
            f"{len(leaks)} leak(s) across splits, e.g. {leaks[:3]}"
            if leaks
            else "documents, contexts and responses each occur in one split only",
        ),
        CheckOutcome(
            "minimum_size",
            n_train >= min_train,
            f"{n_train} training examples (minimum {min_train})",
        ),
    ]


def log_dataset_to_mlflow(
    dsdict: Mapping[str, Any], version: str, name: str = "instruction_dataset"
) -> None:
    """Attach the dataset to the active MLflow run as its training input, with its version.

    The dataset name carries the version so the run page shows which build a model saw;
    evaluation splits are logged too (contexts "validation"/"testing") when non-empty.
    """
    import mlflow
    import pandas as pd

    if mlflow.active_run() is None:
        raise RuntimeError("log_dataset_to_mlflow needs an active MLflow run (mlflow.start_run())")

    def frame(split: str) -> pd.DataFrame:
        if split not in dsdict:
            return pd.DataFrame({c: pd.Series(dtype="str") for c in COLUMNS})
        return pd.DataFrame(_columns(dsdict, split), columns=list(COLUMNS))

    dataset_name = f"{name}@{version}"
    mlflow.log_input(
        mlflow.data.from_pandas(frame("train"), name=dataset_name, targets="response"),
        context="training",
    )
    for split, context in (("validation", "validation"), ("test", "testing")):
        df = frame(split)
        if len(df):
            mlflow.log_input(
                mlflow.data.from_pandas(df, name=dataset_name, targets="response"),
                context=context,
            )
    mlflow.set_tags(
        {
            "dataset_name": name,
            "dataset_version": version,
            **{f"dataset_{s}_rows": str(len(frame(s))) for s in SPLITS},
        }
    )
