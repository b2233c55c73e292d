"""Instruction dataset: grounded generation, filtering, document-level split, checks, MLflow."""

from __future__ import annotations

import pytest

from llmops.dataset import (
    BuildConfig,
    InstructionExample,
    OfflineGenerator,
    build_instruction_dataset,
    check_dataset,
    filter_examples,
    is_grounded,
    log_dataset_to_mlflow,
    split_by_document,
)

PROSE = (
    "The Authority issued a $30 million green bond on September 12, 2024 to finance the solar "
    "installation at the Lakeside plant. Demand from investors reached $74 million, 2.5 times "
    "the amount offered. The installation will have a capacity of 6.5 megawatts. Construction "
    "is planned to start in February 2025 according to the Director."
)
TABLE = (
    "| Service | Standard | Credit if missed |\n|---|---|---|\n"
    "| Planned interruption notice | 48 hours in advance | $20 |\n"
    "| Restoring supply after a burst | within 12 hours | $40 |"
)
ARABIC = (
    "تعلن هيئة مياه نورثويند الإقليمية عن تعديل تعرفة المياه اعتباراً من 1 يناير 2025. "
    "ترتفع الرسوم الثابتة للاشتراك المنزلي بنسبة 3.5% لتصبح 12 دولاراً في الشهر. "
    "تستفيد الأسر المسجلة في برنامج الدعم الاجتماعي من خصم قدره 30% على الرسوم الثابتة."
)


def _chunks(n_docs: int = 6) -> list[dict]:
    out = []
    for d in range(n_docs):
        for i, (text, kind, lang) in enumerate(
            [
                (PROSE.replace("Lakeside", f"Lakeside {d}"), "text", "en"),
                (TABLE.replace("$20", f"${20 + d}"), "table", "en"),
                (ARABIC.replace("30%", f"{30 + d}%"), "text", "ar"),
            ]
        ):
            out.append(
                {
                    "chunk_id": f"d{d}c{i}",
                    "doc_id": f"doc-{d}",
                    "ordinal": i,
                    "text": text,
                    "kind": kind,
                    "heading": "Finances",
                    "language": lang,
                }
            )
    return out


ENTITIES = {
    "d0c0": {
        "money": ["$30 million", "$74 million"],
        "date": ["September 12, 2024"],
        "person": ["Nobody Here"],
    }
}


def test_offline_generator_covers_every_task_and_every_example_is_grounded():
    build = build_instruction_dataset(_chunks(), ENTITIES, OfflineGenerator(), BuildConfig())
    rows = [r for s in build.dataset_dict.values() for r in s]
    assert {r["task"] for r in rows} == {"qa", "summarize", "extract_entities", "table_lookup"}
    assert all(is_grounded(InstructionExample(**r)) for r in rows)
    assert any(r["language"] == "ar" and "الوثيقة" in r["instruction"] for r in rows)
    cell = next(r for r in rows if r["task"] == "table_lookup")
    assert cell["response"] in cell["context"]
    ents = next(r for r in rows if r["task"] == "extract_entities")
    assert "Nobody Here" not in ents["response"]  # not in the text, so never asked for


def test_build_is_deterministic_and_split_by_document():
    a = build_instruction_dataset(_chunks(), ENTITIES, OfflineGenerator(), BuildConfig())
    b = build_instruction_dataset(_chunks(), ENTITIES, OfflineGenerator(), BuildConfig())
    assert a.version == b.version and len(a.version) == 16
    docs = {s: set(ds["doc_id"]) for s, ds in a.dataset_dict.items()}
    assert all(docs[s] for s in docs)
    assert not (
        docs["train"] & docs["validation"]
        or docs["train"] & docs["test"]
        or docs["validation"] & docs["test"]
    )
    assert all(c.passed for c in check_dataset(a.dataset_dict, min_train=5))
    c = build_instruction_dataset(_chunks(7), ENTITIES, OfflineGenerator(), BuildConfig())
    assert c.version != a.version


def test_checks_catch_leakage_empty_fields_and_a_tiny_dataset():
    from datasets import Dataset, DatasetDict

    ex = InstructionExample("What is the credit?", TABLE, "$40", "table_lookup", "doc-1", "c1")
    leak = ex.to_dict()
    empty = {**ex.to_dict(), "doc_id": "doc-2", "response": " ", "context": "other"}
    dsd = DatasetDict(
        {
            "train": Dataset.from_list([ex.to_dict()]),
            "validation": Dataset.from_list([leak]),
            "test": Dataset.from_list([empty]),
        }
    )
    outcomes = {c.name: c for c in check_dataset(dsd, min_train=2)}
    assert set(outcomes) == {"no_empty_fields", "no_leakage", "minimum_size"}
    assert not any(c.passed for c in outcomes.values())
    assert "doc_id in train and validation" in outcomes["no_leakage"].message


def test_filter_rejects_duplicates_ungrounded_and_empty():
    good = InstructionExample(
        "What does the document say about demand?",
        PROSE,
        "Demand from investors reached $74 million, 2.5 times the amount offered.",
        "qa",
        "d",
        "c",
    )
    invented = InstructionExample(
        "What does the document say about demand?",
        PROSE,
        "Demand reached $90 million.",
        "qa",
        "d",
        "c",
    )
    empty = InstructionExample("What does the document say?", PROSE, "", "qa", "d", "c")
    kept, rejected = filter_examples([good, good, invented, empty], BuildConfig())
    assert kept == [good]
    assert rejected == {"duplicate": 1, "ungrounded": 1, "empty_field": 1}


def test_split_rules_for_few_documents():
    ex = [InstructionExample("q" * 12, "c", "r", "qa", f"doc-{i}", f"c{i}") for i in range(2)]
    two = split_by_document(ex)
    assert len(two["train"]) == 1 and len(two["test"]) == 1 and not two["validation"]
    assert len(split_by_document(ex[:1])["train"]) == 1


def test_a_failing_generator_chunk_is_counted_not_raised():
    class Flaky(OfflineGenerator):
        def generate(self, chunk, entities):
            if chunk["chunk_id"] == "d0c0":
                raise RuntimeError("endpoint timeout")
            return super().generate(chunk, entities)

    build = build_instruction_dataset(_chunks(), {}, Flaky(), BuildConfig())
    assert build.stats["generator_failures"] == 1 and build.stats["kept"] > 0


def test_dataset_is_logged_as_an_mlflow_input(tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        experiment = mlflow.set_experiment("dataset-test")
        build = build_instruction_dataset(_chunks(), ENTITIES, OfflineGenerator(), BuildConfig())
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            log_dataset_to_mlflow(build.dataset_dict, build.version)
        logged = mlflow.get_run(run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous)
    inputs = logged.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {f"instruction_dataset@{build.version}"}
    assert logged.data.tags["dataset_version"] == build.version


@pytest.mark.parametrize("corpus_file", ["issue-33-lorem-ipsum.pdf"])
def test_real_pdf_text_gives_grounded_pairs(corpus_dir, corpus_file):
    import pdfplumber

    with pdfplumber.open(corpus_dir / "pdfs" / corpus_file) as pdf:
        text = "\n".join(p.extract_text() or "" for p in pdf.pages)
    chunks = [
        {
            "chunk_id": f"c{i}",
            "doc_id": f"doc-{i % 3}",
            "ordinal": i,
            "text": para,
            "kind": "text",
            "heading": "",
            "language": "la",
        }
        for i, para in enumerate(p for p in text.split("\n\n") if len(p) > 200)
    ]
    if not chunks:
        chunks = [
            {
                "chunk_id": "c0",
                "doc_id": "doc-0",
                "ordinal": 0,
                "text": text,
                "kind": "text",
                "heading": "",
                "language": "la",
            }
        ]
    build = build_instruction_dataset(chunks, {}, OfflineGenerator(), BuildConfig())
    assert build.stats["kept"] > 0
    rows = [r for s in build.dataset_dict.values() for r in s]
    assert all(is_grounded(InstructionExample(**r)) for r in rows)
