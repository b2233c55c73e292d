"""`llmops compare A B`: paired statistics on CSV/Parquet score tables through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmops import stats
from pipelines.cli import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A (CSV) and B (Parquet): 50 shared ids, 2 only in A, 4 only in B, one NaN in B."""
    rng = np.random.default_rng(9)
    base = tmp_path_factory.mktemp("compare")
    n = 52
    a = pd.DataFrame({
        "sample_id": [f"q{i:03d}" for i in range(n)],
        "rouge_l": rng.uniform(0.1, 0.6, n),
        "exact_match": rng.integers(0, 2, n),
        "answer": ["some text"] * n,
    })
    b = pd.DataFrame({
        "sample_id": [f"q{i:03d}" for i in range(2, n + 4)],
        "rouge_l": np.r_[a["rouge_l"].to_numpy()[2:] + rng.uniform(0.05, 0.25, n - 2),
                         rng.uniform(0, 1, 4)],
        "exact_match": rng.integers(0, 2, n + 2),
        "answer": ["other text"] * (n + 2),
    })
    b.loc[10, "rouge_l"] = np.nan
    out = {"a": base / "a.csv", "b": base / "b.parquet", "b_csv": base / "b.csv"}
    a.to_csv(out["a"], index=False)
    b.to_parquet(out["b"])
    b.to_csv(out["b_csv"], index=False)
    dup = pd.concat([a, a.head(1)])
    dup.to_csv(base / "dup.csv", index=False)
    out["dup"] = base / "dup.csv"
    a.drop(columns="sample_id").to_csv(base / "noid.csv", index=False)
    out["noid"] = base / "noid.csv"
    return out


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["compare", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_has_every_field_per_metric_and_the_unmatched_counts(tables: dict[str, Path]) -> None:
    payload = _json([str(tables["a"]), str(tables["b"]), "--n-boot", "2000"])
    assert payload["alpha"] == 0.05
    assert payload["n_paired"] == 50
    assert payload["n_unmatched_a"] == 2 and payload["n_unmatched_b"] == 4
    assert payload["unmatched_a"] == ["q000", "q001"]
    by_metric = {c["metric"]: c for c in payload["comparisons"]}
    assert set(by_metric) == {"rouge_l", "exact_match"}  # the text column is not a metric
    for c in by_metric.values():
        for key in ("metric", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "test",
                    "p_value", "p_adjusted", "significant", "effect_size"):
            assert key in c, key
    rouge = by_metric["rouge_l"]
    assert rouge["test"] == "wilcoxon" and rouge["n"] == 49 and rouge["n_dropped_nan"] == 1
    assert rouge["significant"] and rouge["diff"] > 0 and rouge["ci_low"] > 0
    assert by_metric["exact_match"]["test"] == "mcnemar"
    # same numbers as the library on the same files
    lib = stats.compare_tables(tables["a"], tables["b"], n_boot=2000).comparison("rouge_l")
    assert rouge["p_value"] == pytest.approx(lib.p_value)
    assert rouge["ci_low"] == pytest.approx(lib.ci_low)


def test_metric_and_alpha_options_and_csv_parquet_agree(tables: dict[str, Path]) -> None:
    parquet = _json([str(tables["a"]), str(tables["b"]), "--metric", "exact_match",
                     "--alpha", "0.01", "--n-boot", "500"])
    csv = _json([str(tables["a"]), str(tables["b_csv"]), "--metric", "exact_match",
                 "--alpha", "0.01", "--n-boot", "500"])
    assert parquet["alpha"] == 0.01
    assert [c["metric"] for c in parquet["comparisons"]] == ["exact_match"]
    assert parquet["comparisons"] == csv["comparisons"]


def test_human_output_is_a_table(tables: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["compare", str(tables["a"]), str(tables["b"]),
                                      "--n-boot", "500"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["metric", "test", "n", "mean_a"]
    assert any(line.startswith("rouge_l") and "wilcoxon" in line for line in lines)
    assert "2 only in A, 4 only in B" in result.stdout


@pytest.mark.parametrize(
    ("which", "extra", "message"),
    [
        ("dup", [], "duplicate 'sample_id'"),
        ("noid", [], "no 'sample_id' column"),
        ("a", ["--metric", "answer"], "column 'answer' is not numeric"),
        ("a", ["--metric", "nope"], r"no column \['nope'\]"),
        ("missing", [], "no such file"),
    ],
)
def test_bad_input_exits_1_naming_the_input(tables: dict[str, Path], tmp_path: Path,
                                            which: str, extra: list[str], message: str) -> None:
    path = tables.get(which, tmp_path / "missing.csv")
    result = CliRunner().invoke(app, ["compare", str(path), str(tables["b"]), *extra])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_usage_errors_exit_2(tables: dict[str, Path]) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["compare", str(tables["a"])]).exit_code == 2
    bad_alpha = runner.invoke(app, ["compare", str(tables["a"]), str(tables["b"]),
                                    "--alpha", "1.5"])
    assert bad_alpha.exit_code == 2 and "--alpha" in bad_alpha.output


def test_installed_entry_point_in_a_subprocess(tables: dict[str, Path]) -> None:
    """The real console path (python -m / exit codes / stdout is pure JSON)."""
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "compare",
           str(tables["a"]), str(tables["b"]), "--json", "--n-boot", "500"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_paired"] == 50
    bad = subprocess.run([*cmd[:4], str(tables["dup"]), str(tables["b"])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "error:" in bad.stderr and "dup.csv" in bad.stderr
