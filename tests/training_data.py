"""Corpus text and a small instruction DatasetDict for the training tests and benchmark.

The real dataset builder lives in llmops/dataset.py; training only needs its saved shape
(DatasetDict train/validation/test with instruction/context/response/doc_id/task), so these
tests build a small one directly from real text, split by document like the real one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("LLMOPS_SHARED_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))

BUILTIN_TEXT = """\
The water authority publishes an annual report on supply, demand and the state of its network.
Rainfall in the northern catchment was below the long-term average for the third year running.
Reservoir levels fell to forty two percent of capacity at the end of the dry season.
The board approved a programme to replace old cast iron mains in the eastern districts.
Leakage across the network was reduced by eleven percent compared with the previous year.
Customers can report a burst pipe at any hour through the service line or the website.
A drought plan sets out the stages of restriction that apply as storage falls.
In stage one, garden watering with hoses is limited to the early morning and late evening.
In stage two, filling private swimming pools and washing cars with hoses are not allowed.
The tariff for households rises by three percent from the first of January.
Farmers who hold abstraction licences must submit meter readings every month.
The laboratory tested more than twelve thousand samples for bacteria and nitrates.
All samples met the national drinking water standard except two, which were retested.
The authority plans to build a new treatment works near the river crossing by 2027.
"""


def corpus_texts(max_pdf_pages: int = 40) -> list[str]:
    """Page texts of the shared real PDFs (when present) plus the built-in paragraphs."""
    return list(_corpus_texts(max_pdf_pages))


@functools.lru_cache(maxsize=2)
def _corpus_texts(max_pdf_pages: int) -> tuple[str, ...]:
    texts: list[str] = []
    pdfs = CORPUS / "pdfs"
    if pdfs.is_dir():
        import pdfplumber

        for path in sorted(pdfs.glob("*.pdf")):
            try:
                with pdfplumber.open(path) as pdf:
                    for page in pdf.pages[:10]:
                        text = page.extract_text() or ""
                        if len(text.strip()) > 200:
                            texts.append(text)
            except Exception:  # the corpus holds broken PDFs on purpose
                continue
            if len(texts) >= max_pdf_pages:
                break
    for name in sorted((REPO_ROOT / "examples" / "sources").glob("*.txt")):
        texts.append(name.read_text(encoding="utf-8", errors="replace"))
    texts.append(BUILTIN_TEXT)
    return tuple(texts)


def _sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", flat) if 30 <= len(s.strip()) <= 220]


def doc_id_of(index: int, text: str) -> str:
    """The doc_id ``instruction_pairs`` gives the ``index``-th text."""
    return f"doc{index:02d}-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def instruction_pairs(texts: list[str], per_doc: int = 40) -> list[dict[str, str]]:
    """Instruction examples in the dataset builder's fields, several tasks per passage."""
    rows: list[dict[str, str]] = []
    for d, text in enumerate(texts):
        doc_id = doc_id_of(d, text)
        sents = _sentences(text)
        for i in range(min(per_doc, max(0, len(sents) - 1))):
            context = " ".join(sents[i : i + 2])
            first = sents[i]
            rows.append(
                {
                    "instruction": "Quote the first sentence of the passage.",
                    "context": context,
                    "response": first,
                    "doc_id": doc_id,
                    "task": "extract",
                }
            )
            words = first.split()
            rows.append(
                {
                    "instruction": "Which words open the passage?",
                    "context": context,
                    "response": "The passage opens with: " + " ".join(words[:6]) + ".",
                    "doc_id": doc_id,
                    "task": "qa",
                }
            )
    return rows


def save_instruction_dataset(
    rows: list[dict[str, str]], path: Path, test_docs: int = 2, val_docs: int = 2
) -> dict[str, int]:
    """Doc-level split (last docs go to test and validation) saved with save_to_disk."""
    from datasets import Dataset, DatasetDict

    docs = sorted({r["doc_id"] for r in rows})
    test = set(docs[-test_docs:])
    val = set(docs[-(test_docs + val_docs) : -test_docs])
    splits = {
        "train": [r for r in rows if r["doc_id"] not in test | val],
        "validation": [r for r in rows if r["doc_id"] in val],
        "test": [r for r in rows if r["doc_id"] in test],
    }
    DatasetDict({k: Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(path))
    return {k: len(v) for k, v in splits.items()}


def dataset_version(rows: list[dict[str, str]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(sorted(row.items())).encode())
    return digest.hexdigest()[:16]


# Small enough for CPU tests (~0.65M parameters), big enough to be a real LM on the corpus.
TEST_BASE = {"vocab_size": 2048, "n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 128,
             "pretrain_steps": 80, "seed": 13}


def shared_tiny_base(basetemp: Path) -> Any:
    """The session's tiny base model: built once, reused by every test module (keyed by hash)."""
    from llmops.base_model import BaseModelConfig, resolve_base_model

    return resolve_base_model(
        BaseModelConfig(**TEST_BASE), texts=corpus_texts(), out_root=basetemp / "bases"
    )


def shared_dataset(basetemp: Path) -> tuple[Path, str]:
    """The session's instruction DatasetDict on disk and its version."""
    path = basetemp / "instruction_dataset"
    rows = instruction_pairs(corpus_texts())
    if not (path / "dataset_dict.json").is_file():
        save_instruction_dataset(rows, path)
    return path, dataset_version(rows)


def report_dataset(instance: Any, metadata: dict[str, Any], passed: bool = True) -> None:
    """Record an instruction_dataset version as if the dataset asset and its blocking checks
    had run (training only takes versions whose checks passed)."""
    import dagster as dg
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,  # no public constructor path
    )

    from assets.dataset import DATASET_CHECKS, instruction_dataset

    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=instruction_dataset.key, metadata=metadata)
    )
    record = instance.fetch_materializations(instruction_dataset.key, limit=1).records[0]
    target = AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )
    for name in DATASET_CHECKS:
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=instruction_dataset.key, check_name=name,
            passed=passed or name != "no_leakage", metadata={},
            target_materialization_data=target,
        ))
