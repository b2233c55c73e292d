"""Run every bench/bench_*.py in its own interpreter and keep their output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    only = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"=== {name}", flush=True)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(script), *flags], cwd=HERE.parent, capture_output=True, text=True
        )
        out = proc.stdout + (proc.stderr if proc.returncode else "")
        print(out.rstrip())
        print(f"--- {name}: {time.perf_counter() - started:.1f}s, exit {proc.returncode}\n")
        (results / f"{name}.txt").write_text(out)
        if proc.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
