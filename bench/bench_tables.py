"""Tables found per corpus PDF with and without the unruled-table finder, and prose pages.

The unruled finder must add tables where aligned columns are clearly there without turning
prose (the Federal Register's three columns, the lorem-ipsum paragraphs, the transcript) into
tables. Prints per file: tables ruled-only -> with unruled, and pages whose text lost more than
half of its characters to tables (a sign prose became a table). Needs ../shared/corpus/pdfs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus" / "pdfs"


def count(data: bytes, name: str, unruled: bool) -> tuple[int, int, int, float]:
    from llmops.ingestion import DocumentError, IngestConfig, extract_document

    cfg = IngestConfig(detect_unruled_tables=unruled, ocr_workers=1)
    started = time.perf_counter()
    try:
        pages = extract_document(data, name, cfg)
    except DocumentError:
        return -1, 0, 0, 0.0
    tables = sum(len(p.tables) for p in pages)
    table_chars = sum(len(t.markdown) for p in pages for t in p.tables)
    text_chars = sum(len(p.text) for p in pages)
    return tables, table_chars, text_chars, time.perf_counter() - started


def main() -> int:
    if not CORPUS.is_dir():
        print(f"skipped: {CORPUS} not found")
        return 0
    print(f"{'file':45} {'ruled':>6} {'+unruled':>9} {'table chars':>12} {'text chars':>11} "
          f"{'time ratio':>10}")  # fmt: skip
    for path in sorted(CORPUS.glob("*.pdf")):
        data = path.read_bytes()
        before = count(data, path.name, unruled=False)
        after = count(data, path.name, unruled=True)
        if before[0] < 0:
            print(f"{path.name:45} rejected (bad document)")
            continue
        ratio = after[3] / before[3] if before[3] else float("nan")
        print(f"{path.name:45} {before[0]:6d} {after[0]:9d} {before[1]:5d}->{after[1]:<6d} "
              f"{before[2]:5d}->{after[2]:<6d} {ratio:9.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
