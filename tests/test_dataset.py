"""Instruction dataset: grounded pairs, doc-level split, version, checks, MLflow input."""

from __future__ import annotations

import dataclasses

import pytest

from llmops.chunking import chunk_pages
from llmops.dataset import (
    COLUMNS,
    SPLITS,
    BuildConfig,
    InstructionExample,
    OfflineGenerator,
    build_instruction_dataset,
    check_dataset,
    dataset_version,
    filter_examples,
    is_grounded,
    log_dataset_to_mlflow,
    parse_markdown_table,
    split_by_document,
    to_dataset_dict,
)
from llmops.entities import extract_entities

PROSE = (
    "Budget Overview\n\n"
    "The Department of Energy requested $4.5 million for fiscal year 2015. "
    "The program was approved by the Senate Appropriations Committee on March 3, 2015. "
    "Funds will be distributed to twelve states over three years. "
    "Each participating state must submit a quarterly report to the department. "
    "Reports are published at https://www.energy.gov/reports for public review."
)
TABLE = (
    "Senate expenditures\n\n"
    "| Office | 2014 | 2015 |\n"
    "| --- | --- | --- |\n"
    "| Senator Smith | $1,200 | $1,350 |\n"
    "| Committee on Rules | $800 | $950 |\n"
    "| Office of the Clerk | $3,100 \\| est. | $3,400 |\n"
    "| Total | $5,100 | $5,700 |"
)
ARABIC = (
    "الميزانية العامة\n\n"
    "أعلنت وزارة المالية في الرياض عن ميزانية بقيمة 500 مليون ريال سعودي لعام 2024. "
    "وتهدف الميزانية إلى دعم مشاريع التعليم والصحة في جميع مناطق المملكة. "
    "وقد وافق مجلس الوزراء على الخطة في 3 رمضان 1445 هـ. "
    "وستنشر الوزارة تقريرًا ربع سنوي عن مستوى التنفيذ في كل منطقة."
)


def _chunk(doc_id: str, text: str, kind: str = "text", language: str = "en", ordinal: int = 0):
    heading = text.split("\n", 1)[0]
    return {
        "chunk_id": f"{doc_id}-{ordinal}",
        "doc_id": doc_id,
        "ordinal": ordinal,
        "text": text,
        "kind": kind,
        "heading": heading,
        "page_start": 1,
        "page_end": 1,
        "language": language,
        "token_count": len(text.split()),
    }


def _corpus_chunks(corpus_dir) -> list[dict]:
    """Real text and a real table from the shared corpus, chunked by the project chunker."""
    import pdfplumber

    pages = []
    with pdfplumber.open(corpus_dir / "pdfs" / "federal-register-2020-17221.pdf") as pdf:
        for i, page in enumerate(pdf.pages[:3]):
            pages.append(
                {
                    "doc_id": "federal-register",
                    "page_number": i + 1,
                    "text": page.extract_text() or "",
                    "language": "en",
                    "tables": [],
                }
            )
    with pdfplumber.open(corpus_dir / "pdfs" / "issue-33-lorem-ipsum.pdf") as pdf:
        page = pdf.pages[0]
        rows = [[(c or "").replace("\n", " ") for c in r] for r in page.extract_tables()[0]]
        pages.append(
            {
                "doc_id": "lorem",
                "page_number": 1,
                "text": "",
                "language": "en",
                "tables": [{"rows": rows}],
            }
        )
    return [c.to_dict() for c in chunk_pages(pages, lambda s: len(s.split()), max_tokens=120)]


def _synthetic_chunks(n_docs: int = 6) -> list[dict]:
    chunks = []
    for d in range(n_docs):
        chunks.append(_chunk(f"doc{d}", PROSE.replace("2015", str(2000 + d)), ordinal=0))
        chunks.append(_chunk(f"doc{d}", TABLE.replace("Smith", f"Smith{d}"), "table", ordinal=1))
    chunks.append(_chunk("arabic", ARABIC, language="ar"))
    return chunks


def _entities(chunks: list[dict]) -> dict[str, dict[str, list[str]]]:
    return {c["chunk_id"]: extract_entities(c["text"], c["language"], "rules") for c in chunks}


# ---------------------------------------------------------------------------------------------
# Offline generator
# ---------------------------------------------------------------------------------------------


def test_offline_generator_covers_every_task_and_is_grounded():
    gen = OfflineGenerator()
    prose = _chunk("d", PROSE)
    examples = gen.generate(prose, extract_entities(PROSE, "en", "rules"))
    tasks = {e.task for e in examples}
    assert tasks == {"qa", "summarize", "extract_entities"}
    assert len(examples) <= gen.max_per_chunk
    assert all(is_grounded(e) for e in examples)
    qa = [e for e in examples if e.task == "qa"]
    assert all(e.response in PROSE for e in qa)  # the supporting sentence itself
    ents = next(e for e in examples if e.task == "extract_entities")
    assert "DATE: March 3, 2015" in ents.response.splitlines()
    # The heading is not part of any entity (rule NER spans crossing into the body are dropped).
    assert all("Overview" not in line for line in ents.response.splitlines())

    table = gen.generate(_chunk("d", TABLE, "table"), {})
    assert table and {e.task for e in table} == {"table_lookup"}
    rows = parse_markdown_table(TABLE)
    cells = {(r[0], h): v for r in rows[1:] for h, v in zip(rows[0], r, strict=True)}
    for ex in table:
        assert ex.instruction.startswith('In the table "Senate expenditures", what is ')
        row_key = ex.instruction.split(" for ", 1)[1].rstrip("?")
        column = ex.instruction.split("what is ", 1)[1].split(" for ", 1)[0]
        assert cells[(row_key, column)] == ex.response
        assert is_grounded(ex)
    assert len({e.instruction.split(" for ")[0] for e in table}) > 1  # not one column only


def test_escaped_pipe_cell_is_one_cell():
    rows = parse_markdown_table(TABLE)
    assert rows[3] == ["Office of the Clerk", "$3,100 | est.", "$3,400"]


def test_arabic_chunk_gets_arabic_instructions():
    examples = OfflineGenerator().generate(
        _chunk("ar", ARABIC, language="ar"), extract_entities(ARABIC, "ar", "rules")
    )
    assert {e.task for e in examples} >= {"qa", "summarize"}
    for e in examples:
        assert e.language == "ar"
        assert any("\u0600" <= ch <= "\u06ff" for ch in e.instruction.split(":")[0])
        assert is_grounded(e)


def test_generator_is_deterministic_and_seeded():
    chunk = _chunk("d", TABLE, "table")
    assert OfflineGenerator().generate(chunk, {}) == OfflineGenerator().generate(chunk, {})
    variants = {
        tuple(e.instruction for e in OfflineGenerator(seed=s).generate(chunk, {})) for s in range(6)
    }
    assert len(variants) > 1


# ---------------------------------------------------------------------------------------------
# Grounding and filtering
# ---------------------------------------------------------------------------------------------


def _ex(**kw) -> InstructionExample:
    base = {
        "instruction": "According to the document, what was requested?",
        "context": PROSE,
        "response": "The Department of Energy requested $4.5 million for fiscal year 2015.",
        "task": "qa",
        "doc_id": "d",
        "chunk_id": "c",
    }
    return InstructionExample(**{**base, **kw})


def test_is_grounded_rules():
    assert is_grounded(_ex(response="the department   of energy REQUESTED $4.5 million"))
    assert not is_grounded(_ex(response="The Department of Energy requested $9 million."))
    summary = (
        "The Department of Energy requested $4.5 million for fiscal year 2015. "
        "Funds will be distributed to twelve states over three years."
    )
    assert is_grounded(_ex(task="summarize", response=summary))
    assert not is_grounded(_ex(task="summarize", response=summary + " Congress objected."))
    assert is_grounded(_ex(task="extract_entities", response="ORG: Department of Energy"))
    assert not is_grounded(_ex(task="extract_entities", response="ORG: Department of Defense"))
    assert not is_grounded(_ex(task="extract_entities", response="Department of Energy"))
    assert is_grounded(_ex(task="table_lookup", context=TABLE, response="$950"))
    assert is_grounded(_ex(task="table_lookup", context=TABLE, response="$3,100 | est."))
    # A substring of a cell is not a cell.
    assert not is_grounded(_ex(task="table_lookup", context=TABLE, response="$3,1"))


def test_filter_rejects_duplicates_ungrounded_and_bad_lengths():
    good = _ex()
    near = _ex(instruction="according to the document -- what was REQUESTED", chunk_id="c2")
    examples = [
        good,
        good,
        near,
        _ex(response="Congress tripled the budget."),
        _ex(instruction="Why?"),
        _ex(response=""),
        _ex(task="translate"),
        _ex(task="summarize", response="x" * 10),
    ]
    kept, rejected = filter_examples(examples, BuildConfig(max_response_chars=1500))
    assert kept == [good]
    assert rejected == {
        "duplicate": 1,
        "near_duplicate": 1,
        "ungrounded": 2,
        "instruction_too_short": 1,
        "empty_field": 1,
        "unknown_task": 1,
    }
    _, too_long = filter_examples([good], BuildConfig(max_response_chars=20))
    assert too_long == {"response_too_long": 1}


# ---------------------------------------------------------------------------------------------
# Splitting and versioning
# ---------------------------------------------------------------------------------------------


def _doc_examples(n_docs: int, per_doc: int = 2) -> list[InstructionExample]:
    return [
        _ex(doc_id=f"doc-{d}", chunk_id=f"doc-{d}-{i}", instruction=f"Question {d} {i}?")
        for d in range(n_docs)
        for i in range(per_doc)
    ]


@pytest.mark.parametrize("n_docs", [1, 2, 3, 4, 7, 40])
def test_split_keeps_documents_whole_and_fills_small_corpora(n_docs):
    splits = split_by_document(_doc_examples(n_docs), (0.8, 0.1, 0.1), seed=13)
    docs = {s: {e.doc_id for e in splits[s]} for s in SPLITS}
    assert not (docs["train"] & docs["validation"])
    assert not (docs["train"] & docs["test"])
    assert not (docs["validation"] & docs["test"])
    assert sum(len(v) for v in docs.values()) == n_docs
    assert docs["train"]
    if n_docs == 2:
        assert len(docs["test"]) == 1 and not docs["validation"]
    if n_docs >= 3:
        assert docs["validation"] and docs["test"]
    if n_docs == 40:
        assert len(docs["train"]) >= 25  # the ratio still rules a real corpus


def test_split_is_deterministic_seeded_and_stable_when_documents_are_added():
    base = _doc_examples(30)
    a = split_by_document(base, seed=13)
    backwards = split_by_document(base[::-1], seed=13)
    assert all({e.doc_id for e in a[s]} == {e.doc_id for e in backwards[s]} for s in SPLITS)
    other = split_by_document(base, seed=14)
    assert any({e.doc_id for e in a[s]} != {e.doc_id for e in other[s]} for s in SPLITS)
    grown = split_by_document(base + _doc_examples(35)[60:], seed=13)
    for s in SPLITS:
        assert {e.doc_id for e in a[s]} <= {e.doc_id for e in grown[s]}


def test_dataset_version_ignores_order_and_tracks_content():
    splits = split_by_document(_doc_examples(5))
    shuffled = {s: list(reversed(v)) for s, v in splits.items()}
    assert dataset_version(splits) == dataset_version(shuffled)
    assert len(dataset_version(splits)) == 16
    changed = dict(splits)
    changed["train"] = [dataclasses.replace(splits["train"][0], response="Other.")]
    assert dataset_version(changed) != dataset_version(splits)


# ---------------------------------------------------------------------------------------------
# Build on realistic chunks (synthetic + shared corpus)
# ---------------------------------------------------------------------------------------------


def test_build_on_realistic_and_corpus_chunks(corpus_dir):
    chunks = _synthetic_chunks() + _corpus_chunks(corpus_dir)
    kinds = {(c["doc_id"], c["kind"]) for c in chunks}
    assert ("lorem", "table") in kinds and ("federal-register", "text") in kinds
    entities = _entities(chunks)

    build = build_instruction_dataset(chunks, entities, OfflineGenerator(), BuildConfig())
    dsd = build.dataset_dict
    assert set(dsd) == set(SPLITS)
    for s in SPLITS:
        assert dsd[s].column_names == list(COLUMNS)
    rows = [dict(r) for s in SPLITS for r in dsd[s]]
    assert len(rows) == build.stats["kept"] > 30
    assert all(is_grounded(InstructionExample(**r)) for r in rows)
    assert {r["task"] for r in rows} == {"qa", "summarize", "extract_entities", "table_lookup"}
    assert {"federal-register", "lorem", "arabic"} <= {r["doc_id"] for r in rows}
    assert "ar" in {r["language"] for r in rows}
    assert build.stats["generator_errors"] == 0
    assert all(c.passed for c in check_dataset(dsd, min_train=10)), check_dataset(dsd, 10)

    again = build_instruction_dataset(
        list(reversed(chunks)), entities, OfflineGenerator(), BuildConfig()
    )
    assert again.version == build.version


def test_build_counts_generator_failures_and_keeps_other_chunks():
    class Flaky:
        def __init__(self) -> None:
            self.inner = OfflineGenerator()

        def generate(self, chunk, entities):
            if chunk["doc_id"] == "doc1":
                raise TimeoutError("endpoint timed out")
            return self.inner.generate(chunk, entities)

    chunks = _synthetic_chunks(3)
    build = build_instruction_dataset(chunks, {}, Flaky(), BuildConfig())
    assert build.stats["generator_errors"] == 2
    assert "TimeoutError" in build.stats["generator_error_samples"][0]
    doc_ids = {r["doc_id"] for s in SPLITS for r in build.dataset_dict[s]}
    assert doc_ids == {"doc0", "doc2", "arabic"}


def test_build_with_no_chunks_gives_empty_splits_with_columns():
    build = build_instruction_dataset([], {}, OfflineGenerator())
    for s in SPLITS:
        assert len(build.dataset_dict[s]) == 0
        assert build.dataset_dict[s].column_names == list(COLUMNS)
    outcomes = {c.name: c for c in check_dataset(build.dataset_dict)}
    assert outcomes["no_empty_fields"].passed and outcomes["no_leakage"].passed
    assert not outcomes["minimum_size"].passed


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _good_build():
    chunks = _synthetic_chunks(6)
    return build_instruction_dataset(chunks, _entities(chunks), OfflineGenerator(), BuildConfig())


def test_checks_pass_on_a_clean_dataset_and_have_the_contract_names():
    outcomes = check_dataset(_good_build().dataset_dict, min_train=5)
    assert [c.name for c in outcomes] == ["no_empty_fields", "no_leakage", "minimum_size"]
    assert all(c.passed and c.severity in {"error", "warn"} for c in outcomes)


def _rows(dsd) -> dict[str, list[dict]]:
    return {s: [dict(r) for r in dsd[s]] for s in SPLITS}


def _rebuilt(rows: dict[str, list[dict]]):
    return to_dataset_dict({s: [InstructionExample(**r) for r in v] for s, v in rows.items()})


def test_check_catches_leaks_empty_fields_and_small_train():
    rows = _rows(_good_build().dataset_dict)
    assert rows["train"] and rows["test"]

    # The same document in train and test.
    leak = {s: list(v) for s, v in rows.items()}
    leak["test"].append(rows["train"][0])
    result = {c.name: c for c in check_dataset(_rebuilt(leak), min_train=5)}
    assert not result["no_leakage"].passed and "doc_id" in result["no_leakage"].message

    # A context copied into another document's row in another split.
    ctx = {s: list(v) for s, v in rows.items()}
    ctx["test"][0] = {**ctx["test"][0], "context": rows["train"][0]["context"]}
    result = {c.name: c for c in check_dataset(_rebuilt(ctx), min_train=5)}
    assert not result["no_leakage"].passed and "context" in result["no_leakage"].message

    # An identical (long) response in two splits.
    resp = {s: list(v) for s, v in rows.items()}
    long_answer = next(r["response"] for r in rows["train"] if len(r["response"]) > 40)
    resp["test"][0] = {**resp["test"][0], "response": long_answer}
    result = {c.name: c for c in check_dataset(_rebuilt(resp), min_train=5)}
    assert not result["no_leakage"].passed and "response" in result["no_leakage"].message

    empty = {s: list(v) for s, v in rows.items()}
    empty["validation"][0] = {**empty["validation"][0], "response": "  "}
    result = {c.name: c for c in check_dataset(_rebuilt(empty), min_train=5)}
    assert not result["no_empty_fields"].passed
    assert "validation[0].response" in result["no_empty_fields"].message
    assert result["no_leakage"].passed

    n_train = len(rows["train"])
    result = {c.name: c for c in check_dataset(_rebuilt(rows), min_train=n_train + 1)}
    assert not result["minimum_size"].passed and result["minimum_size"].severity == "error"
    assert {c.name: c for c in check_dataset(_rebuilt(rows), min_train=n_train)}[
        "minimum_size"
    ].passed


# ---------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------


def test_log_dataset_to_mlflow_records_the_input(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("instruction-data-test")
    build = _good_build()
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_dataset_to_mlflow(build.dataset_dict, build.version)
    with mlflow.start_run() as run:
        log_dataset_to_mlflow(build.dataset_dict, build.version)
    logged = mlflow.get_run(run.info.run_id)
    inputs = logged.inputs.dataset_inputs
    names = {i.dataset.name for i in inputs}
    assert names == {f"instruction_dataset@{build.version}"}
    contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
    assert "training" in contexts
    assert logged.data.tags["dataset_version"] == build.version
    assert logged.data.tags["dataset_train_rows"] == str(len(build.dataset_dict["train"]))
