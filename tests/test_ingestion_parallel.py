"""A long PDF's text layer read over several processes gives exactly the pages read in one."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from llmops.ingestion import IngestConfig, extract_document
from llmops.ingestion import pdf as pdf_module

CORPUS = Path(os.environ.get("LLMOPS_SHARED_CORPUS", Path(__file__).parents[2] / "shared/corpus"))


def _long_pdf(pages: int) -> bytes:
    """Numbered pages of prose, a heading and a ruled table each: work for every page step."""
    from fpdf import FPDF

    doc = FPDF()
    doc.set_font("Helvetica", size=11)
    for n in range(1, pages + 1):
        doc.add_page()
        doc.set_font("Helvetica", "B", 14)
        doc.cell(0, 10, f"Section {n}: water quality report", new_x="LMARGIN", new_y="NEXT")
        doc.set_font("Helvetica", size=11)
        doc.multi_cell(0, 6, f"Page {n} of the report. " + "Samples were taken weekly. " * 12)
        with doc.table() as table:
            for row in (["site", "nitrate", "lead"], [f"S{n}", f"{n * 1.5:.1f}", f"{n % 4}"]):
                cells = table.row()
                for value in row:
                    cells.cell(value)
    buf = io.BytesIO()
    doc.output(buf)
    return buf.getvalue()


def _records(data: bytes, name: str, workers: int) -> list[dict]:
    cfg = IngestConfig(page_workers=workers, ocr_figures=False)
    return [r.to_dict() for r in extract_document(data, name, cfg)]


def _read_slowly_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """This process reads pages slowly (a spawned helper imports the real, fast reader), so
    helpers get pages even on a loaded machine where they start late. Returns the page numbers
    read here, as they are read."""
    text_page, read = pdf_module._text_page, []

    def slow_text_page(page, cfg):
        read.append(page.page_number)
        time.sleep(0.5)
        return text_page(page, cfg)

    monkeypatch.setattr(pdf_module, "_text_page", slow_text_page)
    return read


def test_parallel_pages_equal_serial_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    data = _long_pdf(9)
    serial = _records(data, "report.pdf", 1)
    assert [r["page_number"] for r in serial] == list(range(1, 10))
    assert "Section 7: water quality report" in serial[6]["text"]

    real, done_by_helper = concurrent.futures.ProcessPoolExecutor, []

    class CountingPool(real):
        def submit(self, fn, *args, **kwargs):
            future = super().submit(fn, *args, **kwargs)
            future.add_done_callback(lambda f: done_by_helper.extend(f.result()))
            return future

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", CountingPool)
    read_here = _read_slowly_here(monkeypatch)
    assert _records(data, "report.pdf", 2) == serial
    assert done_by_helper, "no page was read by the helper process"
    assert sorted(read_here + [i + 1 for i in done_by_helper]) == list(range(1, 10))  # once each
    assert done_by_helper == sorted(done_by_helper) and done_by_helper[0] == 0  # from the front


def _claim_two_pages_then_die(*_: object) -> None:
    """A helper killed mid-document (OOM killer, segfault in a native parser)."""
    bounds = pdf_module._WORKER["bounds"]
    pdf_module._claim(bounds, from_back=False)
    pdf_module._claim(bounds, from_back=False)
    os._exit(1)


def test_pages_of_a_helper_that_died_are_read_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    data = _long_pdf(9)
    serial = _records(data, "report.pdf", 1)
    real, submitted = concurrent.futures.ProcessPoolExecutor, []

    class DyingPool(real):
        def submit(self, fn, *args, **kwargs):
            submitted.append(fn)
            return super().submit(_claim_two_pages_then_die, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", DyingPool)
    read_here = _read_slowly_here(monkeypatch)
    assert _records(data, "report.pdf", 2) == serial
    assert submitted, "no helper was started"
    assert read_here[-2:] == [1, 2]  # the two pages the helper took with it, read here last


def test_short_pdf_stays_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below MIN_PAGES_PER_WORKER pages per worker no helper is started."""
    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("a helper process was started for a short PDF")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    pages = 2 * pdf_module.MIN_PAGES_PER_WORKER - 1
    assert len(_records(_long_pdf(pages), "short.pdf", 2)) == pages


@pytest.mark.skipif(not (CORPUS / "pdfs").is_dir(), reason="no ../shared/corpus")
def test_parallel_pages_equal_serial_pages_on_a_real_report() -> None:
    """The Federal Register notice: 15 pages with columns, footnotes and tables."""
    data = (CORPUS / "pdfs" / "federal-register-2020-17221.pdf").read_bytes()
    serial = _records(data, "federal-register.pdf", 1)
    assert len(serial) == 15
    assert _records(data, "federal-register.pdf", 3) == serial


def _extract_in_daemon(data: bytes, out) -> None:
    out.put(_records(data, "report.pdf", 2))


def test_a_daemonic_worker_reads_its_pages_itself() -> None:
    """A Dask worker is a daemonic process and may not start children: no crash, same pages."""
    import multiprocessing

    data = _long_pdf(8)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_extract_in_daemon, args=(data, out), daemon=True)
    proc.start()
    got = out.get(timeout=120)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert got == _records(data, "report.pdf", 1)
