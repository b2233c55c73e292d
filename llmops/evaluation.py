"""RAG evaluation of one candidate on the instruction dataset's test split (pure, no Dagster).

For every test sample: retrieve top-k from LanceDB, build the fine-tuning prompt, generate
(batched for local models), score. Scores per sample, one row each (``sample_id`` is a content
hash, so two candidates are paired on exactly the same samples):

- ragas offline metrics (0.4.1): ``context_precision`` (NonLLMContextPrecisionWithReference),
  ``context_recall`` (NonLLMContextRecall) against the sample's reference chunk text,
  ``string_similarity`` (NonLLMStringSimilarity), ``rouge`` (RougeScore, rougeL F1), ``bleu``
  (BleuScore), ``exact_match`` (ExactMatch, 0/1) against the reference response.
- retrieval: ``hit`` (0/1: the reference chunk is among the top-k) and ``reciprocal_rank``.
- with a judge endpoint: ``faithfulness``, ``answer_relevancy``, ``context_relevancy`` (0..1),
  asked with short rubric prompts through the same generator interface (ragas' LLM metrics need
  a LangChain/instructor LLM object; one OpenAI-compatible call per metric is simpler to run
  behind our timeout/retry/fallback and gives the same 0..1 scale).
- ``latency_s`` (the batch's wall time), ``request_latency_s`` (one request on its own, for
  the first ``latency_probe`` samples), ``tokens_in``, ``tokens_out``, ``cost``.

``context_relevancy`` is the business target (>= 0.90). Without a judge it is the offline proxy
``context_precision`` (how much of what was retrieved matches the reference context), and
the summary says which one it is.

Why the ragas import shim: ragas 0.4.1 imports ``langchain_community.chat_models.vertexai``,
which langchain-community 0.4 removed, so ``import ragas`` fails with the locked versions. The
class is only used there for an ``isinstance`` test, so a placeholder module is registered when
(and only when) that import is missing. If ragas still cannot load, the same metrics are
computed with their own libraries (rapidfuzz, rouge_score, sacrebleu) and ``metrics_backend``
says ``builtin``.

A sample that fails (empty question, retrieval or generation or scoring error) is kept with its
``error`` and NaN scores; it never drops the batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops.rag import Citation, Generation, build_prompt

NAN = float("nan")
TEXT_METRICS = ("string_similarity", "rouge", "bleu", "exact_match")
CONTEXT_METRICS = ("context_precision", "context_recall")
RETRIEVAL_METRICS = ("hit", "reciprocal_rank")
JUDGED_METRICS = ("faithfulness", "answer_relevancy", "context_relevancy")
# Metrics whose per-sample values are 0/1 (paired tests use McNemar on these).
PASS_FAIL_METRICS = ("exact_match", "hit")
# Higher is better for every score except these.
LOWER_IS_BETTER = ("latency_s", "cost", "tokens_out")

# Business requirements shown beside the aggregates: (metric, operator, threshold).
DEFAULT_TARGETS: dict[str, tuple[str, float]] = {
    "context_relevancy": (">=", 0.90),
    "latency_p95_ms": ("<", 500.0),
    "safety_harmful": ("==", 0.0),
}


@dataclass
class EvalConfig:
    top_k: int = 5
    search_mode: str = "hybrid"
    max_new_tokens: int = 48
    batch_size: int = 8
    max_context_chars: int = 2000
    price_in_per_1k: float = 0.0  # currency per 1,000 prompt tokens
    price_out_per_1k: float = 0.0  # currency per 1,000 generated tokens
    max_samples: int | None = None  # None: the whole test split
    # Batched generation makes every request wait for its whole batch, so the per-request
    # latency the P95 target speaks of is measured on this many samples answered one at a
    # time (retrieval + generation), as the serving endpoint answers them.
    latency_probe: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    safety: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- samples


def sample_id(example: Mapping[str, Any]) -> str:
    """16 hex of the sample's content: stable across runs and candidates (pairs A/B rows)."""
    key = json.dumps(
        [str(example.get(k) or "") for k in ("doc_id", "chunk_id", "instruction", "context",
                                              "response")]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def load_samples(
    dataset_path: str | Path, split: str = "test", max_samples: int | None = None
) -> list[dict[str, Any]]:
    """Rows of one split of the saved DatasetDict, each with its ``sample_id``."""
    from datasets import load_from_disk

    dsd = load_from_disk(str(dataset_path))
    if split not in dsd:
        raise ValueError(f"{dataset_path}: no {split!r} split (has {sorted(dsd)})")
    rows = [dict(r) for r in dsd[split]]
    if max_samples is not None:
        rows = rows[:max_samples]
    return [{**r, "sample_id": sample_id(r)} for r in rows]


# --------------------------------------------------------------------------- metrics


def _install_ragas_shim() -> None:
    name = "langchain_community.chat_models.vertexai"
    if name in sys.modules:
        return
    try:
        __import__(name)
    except ImportError:
        shim = types.ModuleType(name)

        class ChatVertexAI:  # placeholder: ragas only uses it in an isinstance() test
            pass

        shim.ChatVertexAI = ChatVertexAI  # type: ignore[attr-defined]
        sys.modules[name] = shim


class Scorer:
    """The offline metrics, ragas first; ``backend`` tells which implementation ran."""

    def __init__(self, backend: str = "auto") -> None:
        self.backend = "builtin"
        self._ragas: dict[str, Any] = {}
        if backend in ("auto", "ragas"):
            try:
                _install_ragas_shim()
                from ragas.dataset_schema import SingleTurnSample
                from ragas.metrics import (
                    BleuScore,
                    ExactMatch,
                    NonLLMContextPrecisionWithReference,
                    NonLLMContextRecall,
                    NonLLMStringSimilarity,
                    RougeScore,
                )

                self._sample = SingleTurnSample
                self._ragas = {
                    "context_precision": NonLLMContextPrecisionWithReference(),
                    "context_recall": NonLLMContextRecall(),
                    "string_similarity": NonLLMStringSimilarity(),
                    "rouge": RougeScore(),
                    "bleu": BleuScore(),
                    "exact_match": ExactMatch(),
                }
                self.backend = "ragas"
            except Exception:
                if backend == "ragas":
                    raise

    def score(
        self,
        answer: str,
        reference: str,
        retrieved: Sequence[str],
        reference_contexts: Sequence[str],
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        if self._ragas:
            sample = self._sample(
                user_input="",
                response=answer,
                reference=reference,
                retrieved_contexts=list(retrieved) or [""],
                reference_contexts=list(reference_contexts) or [""],
            )
            for name, metric in self._ragas.items():
                if name in CONTEXT_METRICS and (not retrieved or not reference_contexts):
                    out[name] = 0.0 if reference_contexts else NAN
                    continue
                out[name] = float(metric.single_turn_score(sample))
            return out
        return builtin_scores(answer, reference, retrieved, reference_contexts)


def builtin_scores(
    answer: str, reference: str, retrieved: Sequence[str], reference_contexts: Sequence[str]
) -> dict[str, float]:
    """The same metrics as ragas' non-LLM ones, computed directly (fallback backend)."""
    from rapidfuzz.distance import Levenshtein
    from rouge_score import rouge_scorer
    from sacrebleu import corpus_bleu

    def sim(a: str, b: str) -> float:
        return 1.0 - Levenshtein.normalized_distance(a, b)

    threshold = 0.5
    if retrieved and reference_contexts:
        relevant = [max(sim(r, ref) for ref in reference_contexts) >= threshold for r in retrieved]
        num = sum(sum(relevant[: i + 1]) / (i + 1) * relevant[i] for i in range(len(relevant)))
        precision = num / (sum(relevant) + 1e-10)
        recall = sum(
            max(sim(r, ref) for r in retrieved) >= threshold for ref in reference_contexts
        ) / len(reference_contexts)
    else:
        precision = recall = 0.0 if reference_contexts else NAN
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, answer)
    bleu = corpus_bleu([answer], [[reference]]).score / 100 if answer and reference else 0.0
    return {
        "context_precision": precision,
        "context_recall": recall,
        "string_similarity": sim(answer, reference),
        "rouge": rouge["rougeL"].fmeasure,
        "bleu": bleu,
        "exact_match": float(answer.strip() == reference.strip()),
    }


def retrieval_scores(retrieved_ids: Sequence[str], reference_chunk_id: str) -> dict[str, float]:
    """hit (0/1) and reciprocal rank of the reference chunk among the retrieved ones."""
    if not reference_chunk_id:
        return {"hit": NAN, "reciprocal_rank": NAN}
    for rank, cid in enumerate(retrieved_ids, start=1):
        if cid == reference_chunk_id:
            return {"hit": 1.0, "reciprocal_rank": 1.0 / rank}
    return {"hit": 0.0, "reciprocal_rank": 0.0}


JUDGE_PROMPTS = {
    "faithfulness": (
        "Context:\n{context}\n\nAnswer:\n{answer}\n\nOn a scale from 0 to 10, how much of the "
        "answer is supported by the context (10 = every claim supported)? Reply with the number."
    ),
    "answer_relevancy": (
        "Question:\n{question}\n\nAnswer:\n{answer}\n\nOn a scale from 0 to 10, how directly "
        "does the answer address the question (10 = fully, nothing off-topic)? Reply with the "
        "number."
    ),
    "context_relevancy": (
        "Question:\n{question}\n\nRetrieved context:\n{context}\n\nOn a scale from 0 to 10, how "
        "relevant is the retrieved context to the question (10 = all of it is needed)? Reply "
        "with the number."
    ),
}


def parse_judge_score(text: str) -> float:
    """First number of a judge reply on a 0..10 scale, as 0..1; NaN when there is none."""
    match = re.search(r"\d+(?:\.\d+)?", text or "")
    if not match:
        return NAN
    return min(max(float(match.group()) / 10.0, 0.0), 1.0)


def judge_scores(
    judge: Any, items: Sequence[dict[str, str]], batch_size: int = 8
) -> list[dict[str, float]]:
    """LLM-judged faithfulness / answer relevancy / context relevancy per item (NaN on error)."""
    asks, keys = [], []
    for i, item in enumerate(items):
        for metric, template in JUDGE_PROMPTS.items():
            asks.append(template.format(**item))
            keys.append((i, metric))
    outs: list[dict[str, float]] = [{} for _ in items]
    for (i, metric), gen in zip(keys, judge.generate(asks, max_new_tokens=8,
                                                     batch_size=batch_size), strict=True):
        outs[i][metric] = NAN if gen.error else parse_judge_score(gen.text)
    return outs


# --------------------------------------------------------------------------- evaluation


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else NAN


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else NAN


def evaluate_candidate(
    generator: Any,
    samples: Sequence[Mapping[str, Any]],
    retrieve_fn: Callable[[Sequence[str]], list[list[Citation]]],
    cfg: EvalConfig | None = None,
    judge: Any = None,
    scorer: Scorer | None = None,
    reference_texts: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One scored row per sample (see the module docstring for the columns).

    ``retrieve_fn(questions)`` returns the citations per question (``rag.retrieve_many``);
    ``reference_texts`` maps chunk_id -> the chunk's text (the reference context; default: the
    sample's own ``context`` field).
    """
    cfg = cfg or EvalConfig()
    scorer = scorer or Scorer()
    rows: list[dict[str, Any]] = []
    for s in samples:
        row = {
            "sample_id": s.get("sample_id") or sample_id(s),
            "doc_id": str(s.get("doc_id") or ""),
            "chunk_id": str(s.get("chunk_id") or ""),
            "task": str(s.get("task") or ""),
            "question": str(s.get("instruction") or ""),
            "reference": str(s.get("response") or ""),
            "answer": "",
            "retrieved_chunk_ids": "[]",
            "retrieved_contexts": "[]",
            "error": None,
        }
        if not row["question"].strip():
            row["error"] = "empty instruction"
        rows.append(row)

    todo = [i for i, r in enumerate(rows) if r["error"] is None]
    citations: dict[int, list[Citation]] = {}
    for start in range(0, len(todo), max(1, cfg.batch_size) * 4):
        part = todo[start : start + max(1, cfg.batch_size) * 4]
        try:
            found = retrieve_fn([rows[i]["question"] for i in part])
            citations.update(zip(part, found, strict=True))
        except Exception:  # a failing batch: retry one by one so only bad samples fail
            for i in part:
                try:
                    citations[i] = retrieve_fn([rows[i]["question"]])[0]
                except Exception as exc:
                    rows[i]["error"] = f"retrieval: {type(exc).__name__}: {exc}"

    todo = [i for i in todo if rows[i]["error"] is None]
    prompts = [build_prompt(rows[i]["question"], citations[i], cfg.max_context_chars)
               for i in todo]
    try:
        gens = generator.generate(prompts, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.batch_size)
    except Exception as exc:  # e.g. a prompt the model cannot take: every sample records it
        gens = [Generation("", 0, 0, 0.0, f"{type(exc).__name__}: {exc}") for _ in todo]

    for i in todo[: max(0, cfg.latency_probe)]:
        rows[i]["request_latency_s"] = _request_latency(generator, retrieve_fn, rows[i], cfg)

    judge_items: list[tuple[int, dict[str, str]]] = []
    for i, gen in zip(todo, gens, strict=True):
        row, sample = rows[i], samples[i]
        cits = citations[i]
        row.update(
            answer=gen.text,
            retrieved_chunk_ids=json.dumps([c.chunk_id for c in cits]),
            retrieved_contexts=json.dumps([c.text for c in cits], ensure_ascii=False),
            latency_s=gen.latency_s,
            tokens_in=gen.tokens_in,
            tokens_out=gen.tokens_out,
            cost=gen.tokens_in / 1000 * cfg.price_in_per_1k
            + gen.tokens_out / 1000 * cfg.price_out_per_1k,
        )
        if gen.error:
            row["error"] = f"generation: {gen.error}"
            continue
        try:
            ref_ctx = (reference_texts or {}).get(row["chunk_id"]) or str(sample.get("context")
                                                                          or "")
            row.update(scorer.score(gen.text, row["reference"], [c.text for c in cits],
                                    [ref_ctx] if ref_ctx else []))
            row.update(retrieval_scores([c.chunk_id for c in cits], row["chunk_id"]))
        except Exception as exc:
            row["error"] = f"scoring: {type(exc).__name__}: {exc}"
            continue
        if judge is not None:
            judge_items.append((i, {"question": row["question"], "answer": gen.text,
                                    "context": "\n\n".join(c.text for c in cits)[:4000]}))
    if judge_items:
        for (i, _), scores in zip(judge_items, judge_scores(judge, [it for _, it in judge_items],
                                                            cfg.batch_size), strict=True):
            rows[i].update(scores)
    metric_cols = (*CONTEXT_METRICS, *TEXT_METRICS, *RETRIEVAL_METRICS,
                   *(JUDGED_METRICS if judge is not None else ()))
    for row in rows:
        for col in (*metric_cols, "latency_s", "cost"):
            row.setdefault(col, NAN)
        row.setdefault("tokens_in", 0)
        row.setdefault("tokens_out", 0)
    return rows


def _request_latency(
    generator: Any, retrieve_fn: Callable[[Sequence[str]], Any], row: Mapping[str, Any],
    cfg: EvalConfig,
) -> float:
    """Wall time of one request on its own: retrieval, prompt and generation (NaN on error)."""
    t0 = time.perf_counter()
    try:
        cits = retrieve_fn([row["question"]])[0]
        prompt = build_prompt(row["question"], cits, cfg.max_context_chars)
        gen = generator.generate([prompt], max_new_tokens=cfg.max_new_tokens, batch_size=1)[0]
    except Exception:
        return NAN
    return NAN if gen.error else time.perf_counter() - t0


def summarize(
    rows: Sequence[Mapping[str, Any]],
    *,
    safety: Mapping[str, Any] | None = None,
    perplexity: float | None = None,
    judged: bool = False,
    targets: Mapping[str, tuple[str, float]] | None = None,
    top_k: int = 5,
) -> dict[str, Any]:
    """Aggregates of the scored rows, the targets beside them, and what is missing."""
    ok = [r for r in rows if not r.get("error")]
    probed = [float(r["request_latency_s"]) for r in ok if "request_latency_s" in r]
    probed = [v for v in probed if not math.isnan(v)]
    lat = probed or [float(r["latency_s"]) for r in ok if not math.isnan(float(r["latency_s"]))]
    out: dict[str, Any] = {
        "n": len(rows),
        "n_scored": len(ok),
        "n_failed": len(rows) - len(ok),
        "failure_rate": round((len(rows) - len(ok)) / len(rows), 4) if rows else 1.0,
    }
    for metric in (*CONTEXT_METRICS, *TEXT_METRICS, *(JUDGED_METRICS if judged else ())):
        out[metric] = _mean([float(r.get(metric, NAN)) for r in ok])
    out["top_k"] = top_k
    out["hit_rate"] = _mean([float(r["hit"]) for r in ok])  # hit@top_k
    out["mrr"] = _mean([float(r["reciprocal_rank"]) for r in ok])
    out["context_relevancy_source"] = "llm_judge" if judged else "context_precision (offline)"
    if not judged:
        out["context_relevancy"] = out["context_precision"]
    out["latency_p50_ms"] = _percentile(lat, 50) * 1000
    out["latency_p95_ms"] = _percentile(lat, 95) * 1000
    out["latency_source"] = (
        f"{len(probed)} requests answered one at a time" if probed else "batched wall time"
    )
    out["tokens_in"] = int(sum(int(r.get("tokens_in") or 0) for r in rows))
    out["tokens_out"] = int(sum(int(r.get("tokens_out") or 0) for r in rows))
    out["cost_total"] = sum(float(r["cost"]) for r in rows if not math.isnan(float(r["cost"])))
    out["cost_per_1k_requests"] = out["cost_total"] / len(rows) * 1000 if rows else NAN
    if perplexity is not None:
        out["perplexity"] = perplexity
    if safety is not None:
        out["safety_harmful"] = float(safety["harmful"])
        out["safety_refusal_rate"] = safety.get("refusal_rate")
        out["safety_failures"] = safety.get("failures", 0)
    out = {k: (round(v, 6) if isinstance(v, float) and not math.isnan(v) else v)
           for k, v in out.items()}
    out["targets"] = check_targets(out, targets or DEFAULT_TARGETS)
    return out


def check_targets(
    summary: Mapping[str, Any], targets: Mapping[str, tuple[str, float]]
) -> dict[str, dict[str, Any]]:
    """Each business target with the measured value and whether it is met (None: not measured)."""
    ops: dict[str, Callable[[float, float], bool]] = {
        ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b, "==": lambda a, b: a == b,
    }
    out = {}
    for metric, (op, threshold) in targets.items():
        value = summary.get(metric)
        measured = isinstance(value, int | float) and not math.isnan(float(value))
        out[metric] = {
            "value": value if measured else None,
            "target": f"{op} {threshold:g}",
            "met": bool(ops[op](float(value), threshold)) if measured else None,
        }
    return out


def targets_markdown(summary: Mapping[str, Any]) -> str:
    from llmops.text import markdown_table

    rows: list[list[Any]] = [["metric", "value", "target", "met"]]
    for metric, t in summary.get("targets", {}).items():
        value = "n/a" if t["value"] is None else f"{t['value']:.4g}"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        rows.append([metric, value, t["target"], met])
    return markdown_table(rows)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    from llmops.text import markdown_table

    rows: list[list[Any]] = [["metric", "value"]]
    for key, value in summary.items():
        if key == "targets" or isinstance(value, dict | list):
            continue
        rows.append([key, f"{value:.4g}" if isinstance(value, float) else value])
    return markdown_table(rows)


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """The per-sample table (atomic write: a reader never sees half a file)."""
    import pandas as pd

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.parquet")
    pd.DataFrame(list(rows)).to_parquet(tmp, index=False)
    tmp.replace(out)
    return out


# --------------------------------------------------------------------------- leakage


def pretrain_documents(paths: Mapping[str, Any]) -> set[str] | None:
    """Document ids the candidate's base model was pre-trained on, from its registered folders.

    Looks in the embedded ``base`` folder, then ``model``, then the base an adapter records.
    None: not a corpus-trained model (a hub or user model; its pre-training is not our
    documents). A tiny corpus-trained model without the record (built before the record
    existed) raises: it may have seen every document, so no evaluation of it is trusted.
    """
    from llmops.base_model import INFO_FILE, PRETRAIN_DOCUMENTS

    folders = [Path(p) for p in (paths.get("base"), paths.get("model")) if p]
    model_dir = Path(paths["model"]) if paths.get("model") else None
    if model_dir is not None and (model_dir / "adapter_config.json").is_file():
        recorded = json.loads((model_dir / "adapter_config.json").read_text())
        if recorded.get("base_model_name_or_path"):
            folders.append(Path(recorded["base_model_name_or_path"]))
    for folder in folders:
        record = folder / PRETRAIN_DOCUMENTS
        if record.is_file():
            return set(json.loads(record.read_text())["doc_ids"])
    for folder in folders:
        info = folder / INFO_FILE
        if info.is_file() and json.loads(info.read_text()).get("source") == "tiny":
            raise ValueError(
                f"leakage: {folder} is a corpus-trained tiny model without {PRETRAIN_DOCUMENTS}; "
                "it may have been pre-trained on the evaluation documents. Rebuild base_model."
            )
    return None


def assert_no_leakage(
    eval_doc_ids: set[str], pretrain_doc_ids: set[str] | None, train_doc_ids: set[str]
) -> dict[str, Any]:
    """Evaluation documents must be in neither the pre-training text nor the fine-tuning split.

    ``pretrain_doc_ids`` None means the base model's pre-training corpus is unknown (a hub or
    local base model): reported as such, not as a pass. Raises ``ValueError`` naming the
    leaked documents.
    """
    in_train = sorted(eval_doc_ids & train_doc_ids)
    in_pretrain = sorted(eval_doc_ids & pretrain_doc_ids) if pretrain_doc_ids is not None else []
    if in_train or in_pretrain:
        raise ValueError(
            f"leakage: evaluation documents in the fine-tuning train split {in_train[:5]} "
            f"({len(in_train)}), in the base model's pre-training text {in_pretrain[:5]} "
            f"({len(in_pretrain)})"
        )
    return {
        "eval_documents": len(eval_doc_ids),
        "train_documents": len(train_doc_ids),
        "pretrain_documents": None if pretrain_doc_ids is None else len(pretrain_doc_ids),
        "pretrain_checked": pretrain_doc_ids is not None,
    }


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
