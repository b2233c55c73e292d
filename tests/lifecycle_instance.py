"""A Dagster instance after the whole lifecycle, built exactly as CI builds it.

Shared by tests/test_ci_lifecycle.py (checks the outcome through the instance) and
tests/test_ui.py (a real dagster-webserver on the same instance), so the lifecycle runs once per
test session. Every step is a subprocess of the commands a user or CI types: `llmops ingest`,
`dagster job execute -m pipelines.definitions -j lifecycle -c configs/ci.yaml`, then the
`evaluation` group as `llmops demo` runs it (`dagster asset materialize ... --partition <candidate>`
per candidate, then `ab_comparison,promotion`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO_ROOT

CONFIG = "configs/ci.yaml"

# A tiny corpus nobody has to download: five plain-text documents about one made-up utility, so
# retrieval, the instruction dataset and its document-level split (train/validation/test) all
# have something to work with. Plain text keeps OCR out of this test (tests/test_e2e_jobs.py
# covers PDFs, DOCX, HTML and scans).
CORPUS: dict[str, str] = {
    "harbor-library-hours.txt": """Harbor City Library: opening hours and services

The central branch on Quay Street opens from 9:00 to 20:00 on weekdays and from 10:00 to 16:00
on Saturdays. It is closed on Sundays and public holidays.

Members may borrow up to twelve items at a time. Books are lent for three weeks and films for
one week. A loan can be renewed twice online unless another member has reserved the item.

The reading room on the second floor holds the maritime archive, which includes harbour
registers from 1850 to 1950. Archive items cannot leave the building.
""",
    "harbor-library-fees.txt": """Harbor City Library: membership and fees

Membership is free for residents of Harbor City. Visitors pay 15 euros per year for a card.

Late returns cost 20 cents per item per day, capped at 5 euros per item. Children under
fourteen never pay late fees.

A lost card is replaced for 2 euros. Damaged books are charged at their replacement price,
and the library keeps the damaged copy for repair or recycling.
""",
    "harbor-library-digital.txt": """Harbor City Library: digital services

The library lends e-books and audiobooks through its online catalogue. A member may hold five
digital loans at once, each for fourteen days.

Public computers in the west wing can be booked for two hours per day. Printing costs 10 cents
per black and white page and 40 cents per colour page.

Free wireless internet is available in every branch. The network name is HarborLibrary and no
password is needed.
""",
    "harbor-library-events.txt": """Harbor City Library: events and programmes

Story time for children aged three to six takes place every Wednesday at 10:30 in the
children's corner.

The local history society meets on the first Monday of each month in the maritime reading
room. Talks start at 18:30 and are open to everyone.

The summer reading challenge runs from July to August. Children who read eight books receive a
certificate and a badge at the closing party in September.
""",
    "harbor-library-branches.txt": """Harbor City Library: branches

Besides the central branch, the library runs two neighbourhood branches. The Lighthouse branch
in the north district opens on Tuesdays, Thursdays and Saturdays.

The Market branch next to the covered market opens every weekday afternoon from 13:00 to 18:00.
Both branches accept returns of items borrowed anywhere in the network.

A mobile library van visits the island villages every second Friday and carries about two
thousand books.
""",
}


@dataclass
class LifecycleInstance:
    """Where the lifecycle ran and what each command returned."""

    root: Path
    env: dict[str, str]
    steps: list[tuple[str, subprocess.CompletedProcess[str], float]] = field(default_factory=list)

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    def failed(self) -> tuple[str, subprocess.CompletedProcess[str]] | None:
        for label, proc, _ in self.steps:
            if proc.returncode != 0:
                return label, proc
        return None


_CACHE: dict[Path, LifecycleInstance] = {}


def venv_bin(name: str) -> str:
    """An entry point of this interpreter's environment, else whatever is on PATH."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def fresh_workspace(root: Path, documents: Iterable[Path] = ()) -> dict[str, str]:
    """An empty Dagster home (the repo's dagster.yaml, telemetry off), data dir, MLflow, and an
    inbox holding ``documents`` (default: the CI corpus)."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    documents = list(documents)
    for path in documents:
        shutil.copy(path, inbox / path.name)
    if not documents:
        for name, text in CORPUS.items():
            (inbox / name).write_text(text, encoding="utf-8")
    home = root / "dagster_home"
    home.mkdir()
    # What the Makefile's $(DAGSTER_HOME)/dagster.yaml rule does for `make demo` / `make ui`.
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LLMOPS_ENV": "ci",
        "LLMOPS_INBOX": str(inbox),
        "LLMOPS_DATA_DIR": str(root / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "HF_HUB_OFFLINE": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def lifecycle_commands() -> list[tuple[str, list[str]]]:
    """The CI sequence, as `llmops demo` chains it, but every Dagster step spelled out."""
    from resources.evaluation import configured_candidate_names

    dagster = venv_bin("dagster")
    commands = [
        ("llmops ingest", [venv_bin("llmops"), "ingest", "--workers", "2"]),
        ("dagster job execute -j lifecycle",
         [dagster, "job", "execute", "-m", "pipelines.definitions", "-j", "lifecycle",
          "-c", CONFIG]),
    ]
    for candidate in configured_candidate_names("ci"):
        commands.append((f"dagster asset materialize evaluation[{candidate}]",
                         [dagster, "asset", "materialize", "-m", "pipelines.definitions",
                          "-c", CONFIG, "--select", "evaluation", "--partition", candidate]))
    commands.append(("dagster asset materialize ab_comparison,promotion",
                     [dagster, "asset", "materialize", "-m", "pipelines.definitions",
                      "-c", CONFIG, "--select", "ab_comparison,promotion"]))
    return commands


def build(root: Path) -> LifecycleInstance:
    """Run the CI sequence once per `root` (cached); stops at the first failing command."""
    if root in _CACHE:
        return _CACHE[root]
    result = LifecycleInstance(root=root, env=fresh_workspace(root))
    for label, cmd in lifecycle_commands():
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=result.env, capture_output=True,
                              text=True, timeout=1200)
        elapsed = time.perf_counter() - start
        result.steps.append((label, proc, elapsed))
        print(f"[ci-lifecycle] {label}: exit {proc.returncode} in {elapsed:.1f}s")
        if proc.returncode != 0:
            break
    _CACHE[root] = result
    return result


def built(root: Path) -> LifecycleInstance:
    """:func:`build`, failing the calling test with the failed command's output."""
    import pytest

    result = build(root)
    failed = result.failed()
    if failed is not None:
        label, proc = failed
        pytest.fail(f"{label} failed:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return result
