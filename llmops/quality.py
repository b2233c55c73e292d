"""Data-quality suites: Great Expectations suites kept as YAML in configs/expectations.

Suites live in configuration, not code, so a team can tighten a bound without a release; values
written as ``"${name}"`` are filled from the parameters the caller passes (the structuring
resource config), so one suite serves every environment. Also the near-duplicate ratio, which GX
has no expectation for.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "configs" / "expectations"
_PARAM = re.compile(r"^\$\{(\w+)\}$")
_lock = threading.RLock()
_batch_definition: Any = None


@dataclass
class QualityResult:
    suite: str
    success: bool
    statistics: dict[str, Any]
    failed: list[dict[str, Any]] = field(default_factory=list)

    def markdown(self) -> str:
        if not self.failed:
            return f"All {self.statistics.get('evaluated_expectations', 0)} expectations passed."
        lines = ["| expectation | column | observed | details |", "|---|---|---|---|"]
        for f in self.failed:
            cells = [f["expectation"], f.get("column") or "", f.get("observed"), f.get("details")]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|")[:120] for c in cells) + " |")
        return "\n".join(lines)


def load_suite(name_or_path: str | Path, directory: str | Path | None = None) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(directory or DEFAULT_DIR) / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"expectation suite {name_or_path!r}: no file {path}")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(spec.get("expectations"), list):
        raise ValueError(f"{path}: an expectation suite needs an 'expectations' list")
    return spec


def _fill(value: Any, params: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str) and (m := _PARAM.match(value)):
        if m.group(1) not in params:
            raise KeyError(f"{where}: parameter {m.group(1)!r} is not provided")
        return params[m.group(1)]
    if isinstance(value, list):
        return [_fill(v, params, where) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, params, where) for k, v in value.items()}
    return value


def _expectation(gx: Any, type_name: str, kwargs: dict[str, Any]) -> Any:
    cls_name = "".join(part.title() for part in type_name.split("_"))
    cls = getattr(gx.expectations, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {type_name!r}")
    return cls(**kwargs)


def _batch_definition_for_dataframes() -> Any:
    """One ephemeral GX context per process: creating it costs seconds, validating is fast."""
    global _batch_definition
    with _lock:
        if _batch_definition is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            source = context.data_sources.add_pandas("llmops")
            asset = source.add_dataframe_asset("frame")
            _batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        return _batch_definition


def with_vector_stats(df: Any) -> Any:
    """Add ``dim`` and ``norm`` columns from a ``vector`` column (GX cannot look into arrays)."""
    if "vector" not in df.columns or {"dim", "norm"} <= set(df.columns):
        return df
    vectors = [np.asarray(v, dtype=np.float32).ravel() for v in df["vector"]]
    return df.assign(
        dim=[int(v.shape[0]) for v in vectors],
        norm=[float(np.linalg.norm(v)) for v in vectors],
    )


def run_suite(
    suite: str | Path,
    df: Any,
    params: Mapping[str, Any] | None = None,
    directory: str | Path | None = None,
) -> QualityResult:
    """Validate a pandas DataFrame against a YAML suite; failures are listed, never raised."""
    import great_expectations as gx

    spec = load_suite(suite, directory)
    df = with_vector_stats(df)
    batch_definition = _batch_definition_for_dataframes()  # also the context suites need
    name = spec.get("name", str(suite))
    params = {"min_text_page_ratio": 0.5, **(params or {})}
    gx_suite = gx.ExpectationSuite(name=f"{name}-{id(df)}")
    for i, item in enumerate(spec["expectations"]):
        kwargs = _fill(dict(item.get("kwargs") or {}), params, f"{name}[{i}]")
        gx_suite.add_expectation(_expectation(gx, item["type"], kwargs))
    missing = sorted(
        {e.column for e in gx_suite.expectations if getattr(e, "column", None)} - set(df.columns)
    )
    if missing:  # GX would raise deep inside; say which column is absent instead
        return QualityResult(
            name,
            False,
            {"evaluated_expectations": 0, "rows": len(df)},
            [{"expectation": "columns exist", "column": c, "observed": "missing"} for c in missing],
        )
    with _lock:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(gx_suite, result_format="SUMMARY")
    failed = []
    for r in result.results:
        if r.success:
            continue
        info = r.result or {}
        failed.append(
            {
                "expectation": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"),
                "observed": info.get("observed_value", info.get("unexpected_percent")),
                "details": info.get("partial_unexpected_list")
                or (str(r.exception_info.get("exception_message")) if not info else None),
            }
        )
    stats = dict(result.statistics)
    stats["rows"] = len(df)
    return QualityResult(name, bool(result.success), stats, failed)


def _shingles(text: str, n: int = 5) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_ratio(
    texts: Sequence[str], threshold: float = 0.9, num_perm: int = 64, bands: int = 16
) -> float:
    """Share of texts that have an earlier near-duplicate (5-gram Jaccard >= threshold).

    MinHash with banding finds candidate pairs in about linear time; each candidate is then
    confirmed with the exact Jaccard similarity, so the ratio has no false positives.
    """
    if len(texts) < 2:
        return 0.0
    shingle_sets = [_shingles(t) for t in texts]
    rng = np.random.default_rng(7)
    prime = np.uint64((1 << 61) - 1)
    a = rng.integers(1, (1 << 61) - 1, num_perm, dtype=np.uint64)
    b = rng.integers(0, (1 << 61) - 1, num_perm, dtype=np.uint64)
    rows = num_perm // bands
    buckets: dict[tuple[int, bytes], list[int]] = {}
    duplicates: set[int] = set()
    for i, shingles in enumerate(shingle_sets):
        if not shingles:
            continue
        # hash() is salted per process, which is fine: signatures are only compared in-process.
        x = np.array([hash(s) & 0x1FFFFFFFFFFFFFFF for s in shingles], dtype=np.uint64)
        signature = ((np.outer(a, x) + b[:, None]) % prime).min(axis=1)
        candidates: set[int] = set()
        for band in range(bands):
            key = (band, signature[band * rows : (band + 1) * rows].tobytes())
            candidates.update(buckets.setdefault(key, []))
            buckets[key].append(i)
        if any(jaccard(shingles, shingle_sets[j]) >= threshold for j in candidates):
            duplicates.add(i)
    return len(duplicates) / len(texts)
