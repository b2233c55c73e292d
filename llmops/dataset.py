"""Instruction dataset: grounded instruction/response pairs from chunks, split by document.

Every generator (the offline one here, the AutoGen team when an endpoint is configured) goes
through the same filter, whose grounding rule is checkable: each answer line must occur in its
context after whitespace and case normalisation. The dataset version is a content hash, so an
unchanged corpus yields the same version and the same training run.
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
_SENTENCE = re.compile(r"(?<=[.!?؟])\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class InstructionExample:
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
    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]: ...


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _sentences(text: str) -> list[str]:
    body = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [s.strip() for s in _SENTENCE.split(body) if len(s.split()) >= 5]


def _parse_table(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


_TEMPLATES = {
    "en": {
        "qa": "According to the document{where}, what is said about {topic}?",
        "summarize": "Summarise the following passage{where} in {n} sentence(s).",
        "extract_entities": "List the {types} in the passage, one per line as type: value.",
        "table_lookup": 'In the table{where}, what is the value of "{column}" for "{row}"?',
    },
    "ar": {
        "qa": "بحسب الوثيقة{where}، ماذا ورد بشأن {topic}؟",
        "summarize": "لخّص النص التالي{where} في {n} جملة.",
        "extract_entities": "اذكر {types} الواردة في النص، كل واحدة في سطر بصيغة النوع: القيمة.",
        "table_lookup": 'في الجدول{where}، ما قيمة "{column}" لـ "{row}"؟',
    },
}


@dataclass
class OfflineGenerator:
    """Deterministic and grounded by construction: answers are copied from the context."""

    seed: int = 13
    max_per_chunk: int = 4
    entity_types: tuple[str, ...] = (
        "date",
        "money",
        "percent",
        "email",
        "url",
        "phone",
        "legal_ref",
        "person",
        "org",
        "location",
    )

    def generate(
        self, chunk: Mapping[str, Any], entities: Mapping[str, Sequence[str]]
    ) -> list[InstructionExample]:
        text = str(chunk.get("text") or "")
        lang = "ar" if chunk.get("language") == "ar" else "en"
        tpl = _TEMPLATES[lang]
        heading = str(chunk.get("heading") or "")
        where = f" ({heading})" if heading else ""

        def make(task: str, instruction: str, response: str) -> InstructionExample:
            return InstructionExample(
                instruction=instruction,
                context=text,
                response=response,
                task=task,
                doc_id=str(chunk["doc_id"]),
                chunk_id=str(chunk["chunk_id"]),
                language=str(chunk.get("language") or "und"),
                generator="offline",
            )

        out: list[InstructionExample] = []
        if chunk.get("kind") == "table":
            rows = _parse_table(text)
            if len(rows) >= 2:
                header, body = rows[0], rows[1:]
                for i, row in enumerate(self._rank(body, str(chunk["chunk_id"]))):
                    if i >= self.max_per_chunk or len(row) != len(header):
                        continue
                    col = 1 + (i % max(1, len(header) - 1))
                    if col < len(row) and row[0] and row[col]:
                        q = tpl["table_lookup"].format(where=where, column=header[col], row=row[0])
                        out.append(make("table_lookup", q, row[col]))
            return out
        sentences = _sentences(text)
        for sentence in self._rank(sentences, str(chunk["chunk_id"]))[:2]:
            topic = self._topic(sentence, heading)
            out.append(make("qa", tpl["qa"].format(where=where, topic=topic), sentence))
        if len(sentences) >= 3:
            summary = self._summary(sentences)
            n = len(summary)
            out.append(
                make("summarize", tpl["summarize"].format(where=where, n=n), " ".join(summary))
            )
        found = [
            (t.lower(), v)
            for t, values in sorted(entities.items())
            if t.lower() in self.entity_types
            for v in values
            if v and v in text
        ]
        if found:
            types = ", ".join(sorted({t for t, _ in found}))
            lines = "\n".join(f"{t}: {v}" for t, v in found[:12])
            out.append(make("extract_entities", tpl["extract_entities"].format(types=types), lines))
        return out[: self.max_per_chunk]

    def _rank(self, items: Sequence[Any], key: str) -> list[Any]:
        """A seeded, content-keyed order: deterministic, but not always the first items."""

        def score(item: Any) -> str:
            return hashlib.sha256(f"{self.seed}:{key}:{item}".encode()).hexdigest()

        return sorted(items, key=score)

    @staticmethod
    def _topic(sentence: str, heading: str) -> str:
        words = _WORD.findall(sentence)
        caps = [w for w in words[1:] if w[:1].isupper()]
        if caps:
            return " ".join(caps[:3])
        return heading or " ".join(words[:4])

    @staticmethod
    def _summary(sentences: list[str], k: int = 2) -> list[str]:
        """Extractive: the k sentences with the highest mean TF-IDF weight, in original order."""
        docs = [Counter(w.casefold() for w in _WORD.findall(s)) for s in sentences]
        df = Counter(w for d in docs for w in d)
        n = len(docs)

        def weight(d: Counter[str]) -> float:
            total = sum(d.values()) or 1
            return sum(c * math.log(1 + n / df[w]) for w, c in d.items()) / total

        best = sorted(range(n), key=lambda i: (-weight(docs[i]), i))[:k]
        return [sentences[i] for i in sorted(best)]


def is_grounded(example: InstructionExample) -> bool:
    """Every answer line (sentence, cell, `type: value` entity) occurs in the context."""
    context = _norm(example.context)
    lines = [ln for ln in example.response.splitlines() if ln.strip()]
    if not lines:
        return False
    for line in lines:
        if example.task == "extract_entities" and ":" in line:
            line = line.split(":", 1)[1]
        if example.task == "summarize":
            if not all(_norm(s) in context for s in _SENTENCE.split(line) if s.strip()):
                return False
        elif _norm(line) not in context:
            return False
    return True


@dataclass
class BuildConfig:
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 13
    max_examples_per_chunk: int = 4
    min_instruction_chars: int = 10
    min_response_chars: int = 2
    max_response_chars: int = 1500
    max_context_chars: int = 6000


def filter_examples(
    examples: Iterable[InstructionExample], cfg: BuildConfig
) -> tuple[list[InstructionExample], dict[str, int]]:
    """One filter for every generator: fields, lengths, grounding, (near-)duplicates."""
    kept: list[InstructionExample] = []
    rejected: Counter[str] = Counter()
    seen: set[str] = set()
    for ex in examples:
        if not (ex.instruction.strip() and ex.context.strip() and ex.response.strip()):
            rejected["empty_field"] += 1
        elif (
            len(ex.instruction) < cfg.min_instruction_chars
            or not (cfg.min_response_chars <= len(ex.response) <= cfg.max_response_chars)
            or len(ex.context) > cfg.max_context_chars
        ):
            rejected["length"] += 1
        elif not is_grounded(ex):
            rejected["ungrounded"] += 1
        else:
            key = hashlib.sha256(
                (" ".join(_WORD.findall(_norm(ex.instruction + " " + ex.response)))).encode()
            ).hexdigest()
            if key in seen:
                rejected["duplicate"] += 1
                continue
            seen.add(key)
            kept.append(ex)
    return kept, dict(rejected)


def split_by_document(
    examples: Sequence[InstructionExample],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 13,
) -> dict[str, list[InstructionExample]]:
    """Whole documents go to one split (no leakage), ordered by a seeded hash of the doc id.

    With 3+ documents, validation and test get at least one document each and train keeps
    the rest; with 2 documents, train and test get one each; with 1, everything is train.
    """
    docs = sorted(
        {e.doc_id for e in examples},
        key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest(),
    )
    n = len(docs)
    n_val = max(1, round(n * ratios[1])) if n >= 3 else 0
    n_test = max(1, round(n * ratios[2])) if n >= 2 else 0
    n_train = max(1, n - n_val - n_test) if n else 0
    assign = {d: "train" for d in docs[:n_train]}
    assign |= {d: "validation" for d in docs[n_train : n_train + n_val]}
    assign |= {d: "test" for d in docs[n_train + n_val :]}
    out: dict[str, list[InstructionExample]] = {s: [] for s in SPLITS}
    for ex in examples:
        out[assign[ex.doc_id]].append(ex)
    return out


def dataset_version(splits: Mapping[str, Sequence[InstructionExample]]) -> str:
    payload = {
        s: sorted(
            json.dumps(e.to_dict(), sort_keys=True, ensure_ascii=False) for e in splits.get(s, [])
        )
        for s in SPLITS
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class DatasetBuild:
    dataset_dict: Any  # datasets.DatasetDict
    version: str
    stats: dict[str, Any] = field(default_factory=dict)


def build_instruction_dataset(
    chunks: Sequence[Mapping[str, Any]],
    entities_by_chunk: Mapping[str, Mapping[str, Sequence[str]]],
    generator: PairGenerator,
    cfg: BuildConfig | None = None,
) -> DatasetBuild:
    """Generate, filter, split and version; one failing chunk is counted, never fatal."""
    from datasets import Dataset, DatasetDict, Features, Value

    cfg = cfg or BuildConfig()
    generated: list[InstructionExample] = []
    failures = 0
    for chunk in sorted(chunks, key=lambda c: (c["doc_id"], c.get("ordinal", 0), c["chunk_id"])):
        try:
            generated += generator.generate(chunk, entities_by_chunk.get(chunk["chunk_id"], {}))[
                : cfg.max_examples_per_chunk
            ]
        except Exception:  # a model endpoint hiccup on one chunk must not lose the batch
            failures += 1
    kept, rejected = filter_examples(generated, cfg)
    splits = split_by_document(kept, cfg.split, cfg.seed)
    features = Features({c: Value("string") for c in COLUMNS})
    dsd = DatasetDict(
        {
            s: Dataset.from_dict(
                {c: [e.to_dict()[c] for e in splits[s]] for c in COLUMNS}, features=features
            )
            for s in SPLITS
        }
    )
    stats = {
        "chunks": len(chunks),
        "generated": len(generated),
        "kept": len(kept),
        "rejected": rejected,
        "generator_failures": failures,
        "tasks": dict(Counter(e.task for e in kept)),
        "documents": {s: len({e.doc_id for e in splits[s]}) for s in SPLITS},
    }
    return DatasetBuild(dsd, dataset_version(splits), stats)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    message: str
    severity: str = "error"


def check_dataset(dsd: Mapping[str, Any], min_train: int = 20) -> list[CheckOutcome]:
    """The checks guarding the hand-off to training."""
    rows = {s: list(dsd[s]) if s in dsd else [] for s in SPLITS}
    empty = [
        (s, i, c)
        for s in SPLITS
        for i, r in enumerate(rows[s])
        for c in ("instruction", "context", "response")
        if not str(r.get(c) or "").strip()
    ]
    leaks = []
    for field_name in ("doc_id", "context", "response"):
        seen: dict[str, str] = {}
        for s in SPLITS:
            for value in {str(r[field_name]) for r in rows[s]}:
                if value in seen and seen[value] != s:
                    leaks.append(f"{field_name} in {seen[value]} and {s}: {value[:60]!r}")
                seen.setdefault(value, s)
    n_train = len(rows["train"])
    return [
        CheckOutcome(
            "no_empty_fields",
            not empty,
            f"{len(empty)} empty field(s), first: {empty[:3]}"
            if empty
            else "every example has an instruction, a context and a response",
        ),
        CheckOutcome(
            "no_leakage",
            not leaks,
            f"{len(leaks)} leak(s): {leaks[:3]}"
            if leaks
            else "documents, contexts and responses are each in one split only",
        ),
        CheckOutcome(
            "minimum_size",
            n_train >= min_train,
            f"{n_train} training examples (minimum {min_train})",
        ),
    ]


def log_dataset_to_mlflow(
    dsd: Mapping[str, Any], version: str, name: str = "instruction_dataset"
) -> None:
    """Record the dataset as an MLflow dataset input of the active run, with its version."""
    import mlflow

    for split in SPLITS:
        if split in dsd and len(dsd[split]):
            df = dsd[split].to_pandas()
            mlflow.log_input(
                mlflow.data.from_pandas(df, name=f"{name}@{version}", targets="response"),
                context=split,
            )
    mlflow.set_tags(
        {
            "dataset_version": version,
            **{f"dataset_{s}_rows": len(dsd[s]) for s in SPLITS if s in dsd},
        }
    )
