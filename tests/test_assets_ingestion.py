"""Ingestion and structuring assets with dg.materialize over document partitions."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT

SAMPLES = REPO_ROOT / "examples" / "inbox"


@pytest.fixture()
def setup(tmp_path):
    from resources.documents import DocumentStoreResource
    from resources.ingestion import IngestionResource
    from resources.knowledge import EmbedderResource, StructuringResource
    from resources.storage import ParquetIOManager

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("customer-charter.docx", "drought-faq.html", "truncated-upload.pdf"):
        shutil.copy(SAMPLES / name, inbox / name)
    (inbox / "empty.txt").write_bytes(b"")
    docs = DocumentStoreResource(
        inbox=str(inbox),
        store=str(tmp_path / "store"),
        quarantine_path=str(tmp_path / "quarantine.jsonl"),
    )
    resources = {
        "docs": docs,
        "ingestion": IngestionResource(ocr_workers=1),
        "structuring": StructuringResource(max_tokens=128, overlap_tokens=16),
        "embedder": EmbedderResource(),
        "io_manager": ParquetIOManager(base_dir=str(tmp_path / "assets")),
    }
    return inbox, tmp_path, resources


def test_each_document_is_its_own_partition_and_bad_ones_fail_alone(setup):
    from assets.checks import chunks_well_formed, pages_have_text
    from assets.ingestion import extracted_pages, raw_documents
    from assets.partitions import sync_document_partitions
    from assets.structuring import chunks, entities

    inbox, tmp_path, resources = setup
    with dg.instance_for_test() as instance:
        sync = sync_document_partitions(instance, resources["docs"])
        assert len(sync.added) == 4
        outcome = {}
        for key in sync.added:
            result = dg.materialize(
                [
                    raw_documents,
                    extracted_pages,
                    chunks,
                    entities,
                    pages_have_text,
                    chunks_well_formed,
                ],
                partition_key=key,
                instance=instance,
                resources=resources,
                raise_on_error=False,
            )
            outcome[key] = result
        good = [k for k in outcome if k.startswith(("customer-charter", "drought-faq"))]
        bad = [k for k in outcome if k not in good]
        assert all(outcome[k].success for k in good)
        assert not any(outcome[k].success for k in bad)

        # One Parquet object per partition: documents never overwrite each other.
        for asset in ("extracted_pages", "chunks", "entities"):
            files = sorted(p.stem for p in (tmp_path / "assets" / asset).glob("*.parquet"))
            assert files == sorted(good), asset

        charter = next(k for k in good if k.startswith("customer-charter"))
        pages = outcome[charter].output_for_node("extracted_pages")
        assert pages[0]["tables"][0]["rows"][0] == ["Service", "Standard", "Credit if missed"]
        stored_chunks = outcome[charter].output_for_node("chunks")
        assert any(c["kind"] == "table" for c in stored_chunks)
        checks = outcome[charter].get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)

        # The bad documents are quarantined with the reason, named by file.
        reasons = {e["name"]: e["code"] for e in resources["docs"].quarantine.entries()}
        assert reasons == {"truncated-upload.pdf": "malformed", "empty.txt": "empty"}
        failure = outcome[next(k for k in bad if k.startswith("truncated"))]
        step_failure = failure.get_step_failure_events()[0]
        assert "truncated-upload.pdf" in step_failure.event_specific_data.error.message

        # A changed file is a new partition; the old key goes, its stored output stays.
        (inbox / "drought-faq.html").write_text(
            (inbox / "drought-faq.html").read_text().replace("$250", "$300")
        )
        sync2 = sync_document_partitions(instance, resources["docs"])
        assert len(sync2.added) == 1 and sync2.added[0].startswith("drought-faq")
        assert any(k.startswith("drought-faq") for k in sync2.removed)
        assert sync2.removed == [next(k for k in good if k.startswith("drought-faq"))]
        assert (tmp_path / "assets" / "chunks" / f"{sync2.removed[0]}.parquet").exists()


def test_a_document_of_empty_pages_fails_its_check_and_blocks_chunking(setup):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from assets.checks import pages_have_text
    from assets.ingestion import extracted_pages, raw_documents
    from assets.partitions import sync_document_partitions
    from assets.structuring import chunks

    inbox, _, resources = setup
    for path in inbox.iterdir():
        path.unlink()
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for _ in range(2):
            fig = plt.figure(figsize=(8.5, 11))
            pdf.savefig(fig)
            plt.close(fig)
    (inbox / "blank-form.pdf").write_bytes(buf.getvalue())
    with dg.instance_for_test() as instance:
        [key] = sync_document_partitions(instance, resources["docs"]).added
        result = dg.materialize(
            [raw_documents, extracted_pages, chunks, pages_have_text],
            partition_key=key,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "char_count" in evaluation.metadata["failed_expectations"].value
    # Blocking: the chunks of this document were never materialized.
    assert not result.asset_materializations_for_node("chunks")
    assert result.asset_materializations_for_node("extracted_pages")
