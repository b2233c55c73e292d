"""A long PDF's text layer read by this process and helper processes together.

Pages are independent (tables, columns and reading order are found per page), so one long
report, the usual straggler of a batch, spreads over the cores instead of holding one while the
others idle. This process claims pages from the last one down while each helper claims them
from the first one up, one page at a time: nobody waits on a helper's start-up, and all finish
within one page of each other however uneven the pages are.

A helper is a plain ``python -m llmops.ingestion.page_workers`` subprocess exchanging pickles
over its stdin/stdout, not a multiprocessing child: a spawned multiprocessing child first
re-imports the parent's main module, which inside a Dagster step is the whole ``dagster`` CLI
(about 1.2 s, half of what a 15-page report takes to read). A helper that dies loses nothing:
the pages it had claimed are read here.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pdfplumber

from llmops.ingestion.config import IngestConfig
from llmops.ingestion.pdf import PdfPageResult, open_pdf, read_text_page

logger = logging.getLogger(__name__)

# Pages per worker below which a helper's start-up (~0.3 s of imports) is not repaid.
MIN_PAGES_PER_WORKER = 4
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def helper_command() -> list[str]:
    """A helper's argv: the interpreter running us, this module as ``__main__``."""
    return [sys.executable, "-m", "llmops.ingestion.page_workers"]


class _Pages:
    """The unread pages as a shared [first, last] pair: helpers take the first, we the last."""

    def __init__(self, n_pages: int) -> None:
        self._lock = threading.Lock()
        self._first, self._last = 0, n_pages - 1

    def claim(self, from_back: bool) -> int | None:
        with self._lock:
            if self._first > self._last:
                return None
            if from_back:
                self._last -= 1
                return self._last + 1
            self._first += 1
            return self._first - 1

    def close(self) -> None:
        with self._lock:
            self._first, self._last = 1, 0


def _serve(
    proc: subprocess.Popen, job: bytes, pages: _Pages, results: dict[int, PdfPageResult]
) -> None:
    """Feed one helper page indices and collect its pages until none is left or it dies."""
    try:
        proc.stdin.write(job)
        while True:
            index = pages.claim(from_back=False)
            pickle.dump(index, proc.stdin)
            proc.stdin.flush()
            if index is None:
                return
            results[index] = pickle.load(proc.stdout)
    except Exception:  # the helper died, was stopped or sent garbage: the caller re-reads
        pass  # every page without a result, so nothing is lost


def read_pages(
    pdf: pdfplumber.PDF, data: bytes, name: str, cfg: IngestConfig, workers: int
) -> list[PdfPageResult]:
    """Every page's text-layer result in order, read here and by ``workers - 1`` helpers."""
    n_pages = len(pdf.pages)
    pages = _Pages(n_pages)
    results: dict[int, PdfPageResult] = {}
    job = pickle.dumps((data, name, cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p
    )}  # fmt: skip
    helpers: list[tuple[subprocess.Popen, threading.Thread]] = []
    try:
        for _ in range(workers - 1):
            try:
                proc = subprocess.Popen(
                    helper_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
                )
            except OSError as err:  # no helper: this process reads the pages it would have
                logger.warning("%s: page helper not started (%s)", name, err)
                break
            thread = threading.Thread(
                target=_serve, args=(proc, job, pages, results), daemon=True
            )
            thread.start()
            helpers.append((proc, thread))
        mine = 0
        while (index := pages.claim(from_back=True)) is not None:
            results[index] = read_text_page(pdf.pages[index], cfg)
            mine += 1
        for _, thread in helpers:
            thread.join()
    finally:
        pages.close()  # on an error here, helpers stop after their current page
        for proc, thread in helpers:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            thread.join()
            for stream in (proc.stdin, proc.stdout):
                stream.close()
    lost = [i for i in range(n_pages) if i not in results]
    by_helpers = n_pages - mine - len(lost)
    logger.debug(
        "%s: %d of %d pages read by %d helper(s), %d re-read here",
        name, by_helpers, n_pages, len(helpers), len(lost),
        extra={"pages_by_helpers": by_helpers, "pages_re_read": len(lost)},
    )  # fmt: skip
    for index in lost:
        results[index] = read_text_page(pdf.pages[index], cfg)
    return [results[i] for i in range(n_pages)]


def _helper_main() -> None:
    """Read (data, name, cfg), then pages by index until told None; answer each with its result.

    The channel is the original stdout; anything else printed goes to stderr. A page whose
    document error would end the document is left to the caller (this helper exits), which
    reads it again and raises the error itself.
    """
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = sys.stdin.buffer
    data, name, cfg = pickle.load(source)
    with open_pdf(data, name, cfg) as pdf:
        while (index := pickle.load(source)) is not None:
            pickle.dump(read_text_page(pdf.pages[index], cfg), channel)
            channel.flush()


if __name__ == "__main__":
    try:
        _helper_main()
    except Exception as err:  # the caller reads this helper's pages itself
        print(f"llmops page helper stopped: {err!r}", file=sys.stderr)
        sys.exit(1)

