"""Code-location load time: `dagster definitions validate` on ours vs a bare one-asset location.

The ratio is what matters: it shows how much our imports and definitions add on top of
Dagster's own start-up, measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = """
import dagster as dg

@dg.asset
def one() -> int:
    return 1

defs = dg.Definitions(assets=[one])
"""


def _validate(args: list[str], cwd: Path) -> float:
    exe = Path(sys.executable).with_name("dagster")
    started = time.perf_counter()
    subprocess.run(
        [str(exe), "definitions", "validate", *args], cwd=cwd, check=True, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    repeats = 3 if parser.parse_args().quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_defs.py"
        bare.write_text(BARE)
        ours, base = [], []
        for _ in range(repeats):  # interleaved, so drift on a shared machine hits both equally
            base.append(_validate(["-f", str(bare)], Path(tmp)))
            ours.append(_validate(["-m", "pipelines.definitions"], ROOT))
    b, o = statistics.median(base), statistics.median(ours)
    print(f"bare one-asset location: median {b:.2f}s over {repeats} runs")
    print(f"pipelines.definitions:   median {o:.2f}s over {repeats} runs")
    print(f"load ratio (ours / bare): {o / b:.2f}x")


if __name__ == "__main__":
    main()
