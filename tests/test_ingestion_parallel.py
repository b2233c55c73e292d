"""A long PDF's text layer read over several processes gives exactly the pages read in one."""

from __future__ import annotations

import io
import logging
import sys
import time

import pytest

from llmops.ingestion import IngestConfig, extract_document, page_workers
from tests.conftest import CORPUS


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
    """This process reads pages slowly (a helper process imports the real, fast reader), so
    helpers get pages even on a loaded machine where they start late. Returns the page numbers
    read here, as they are read."""
    text_page, read = page_workers.read_text_page, []

    def slow_text_page(page, cfg):
        read.append(page.page_number)
        time.sleep(0.5)
        return text_page(page, cfg)

    monkeypatch.setattr(page_workers, "read_text_page", slow_text_page)
    return read


def _helper_pages(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """(pages read by helpers, pages re-read here) from read_pages' debug record."""
    (record,) = [r for r in caplog.records if hasattr(r, "pages_by_helpers")]
    return record.pages_by_helpers, record.pages_re_read


def test_parallel_pages_equal_serial_pages(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _long_pdf(9)
    serial = _records(data, "report.pdf", 1)
    assert [r["page_number"] for r in serial] == list(range(1, 10))
    assert "Section 7: water quality report" in serial[6]["text"]

    read_here = _read_slowly_here(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger=page_workers.__name__):
        assert _records(data, "report.pdf", 2) == serial
    by_helper, re_read = _helper_pages(caplog)
    assert by_helper > 0 and re_read == 0, "no page was read by the helper process"
    assert len(read_here) + by_helper == 9  # each page read once
    assert read_here == list(range(9, 9 - len(read_here), -1))  # this process from the back


def test_pages_of_a_helper_that_died_are_read_in_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A helper killed mid-document (OOM killer, a crash in a native parser) after claiming a
    page: that page is read here, and the document is whole."""
    data = _long_pdf(9)
    serial = _records(data, "report.pdf", 1)
    dies = (
        "import pickle, sys; pickle.load(sys.stdin.buffer); "  # the job
        "pickle.load(sys.stdin.buffer); sys.exit(1)"  # one page claimed, never answered
    )
    monkeypatch.setattr(page_workers, "helper_command", lambda: [sys.executable, "-c", dies])
    read_here = _read_slowly_here(monkeypatch)
    with caplog.at_level(logging.DEBUG, logger=page_workers.__name__):
        assert _records(data, "report.pdf", 2) == serial
    assert _helper_pages(caplog) == (0, 1)
    assert read_here[-1] == 1  # the first page, the helper's claim, read here last


def test_short_pdf_stays_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below MIN_PAGES_PER_WORKER pages per worker no helper is started."""

    def no_helper(*args, **kwargs):
        raise AssertionError("a helper process was started for a short PDF")

    monkeypatch.setattr(page_workers, "read_pages", no_helper)
    pages = 2 * page_workers.MIN_PAGES_PER_WORKER - 1
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
