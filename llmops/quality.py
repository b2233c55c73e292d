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

from llmops.arabic import ArabicConfig, normalize_arabic
from llmops.text import markdown_table

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
        rows = [["expectation", "column", "observed", "details"]]
        rows += [
            [f["expectation"], f.get("column"), f.get("observed"), f.get("details")]
            for f in self.failed
        ]
        return markdown_table(rows, max_cell_chars=120)


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


# Spelling variants are not differences for duplicate detection: harakat (which would also cut
# words apart, being no \w), tatweel, hamza/alef forms, Arabic-Indic digits.
_DEDUP_ARABIC = ArabicConfig(remove_diacritics=True, unify_letters=True)


def _shingles(text: str, n: int = 5) -> set[str]:
    """Word 5-grams of the case- and Arabic-spelling-folded text."""
    words = re.findall(r"\w+", normalize_arabic(text, _DEDUP_ARABIC).casefold())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """``(bands, rows)`` with the most rows per band that still finds a pair at ``threshold``
    with probability >= ``recall`` (``1 - (1 - s**r)**b``).

    datasketch's own optimiser balances false positives against false negatives integrated
    over ``[threshold, 1]`` and so finds only ~70% of the pairs right at the threshold; here a
    false positive is only an extra exact Jaccard check, a false negative a missed duplicate.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


def near_duplicates(
    texts: Sequence[str], threshold: float = 0.9, num_perm: int = 128, seed: int = 1
) -> dict[int, int]:
    """``{index: index of an earlier text it nearly duplicates}`` (5-gram Jaccard >= threshold).

    datasketch's MinHash + LSH finds candidate pairs in about linear time (its permutations
    are bijections on 32 bits, unlike a hand-rolled ``a*x+b`` that wraps uint64 silently, and
    it hashes shingles with SHA-1, so results do not depend on ``PYTHONHASHSEED``). The LSH
    bands are tuned for recall and every candidate is confirmed with the exact Jaccard
    similarity, so the result has no false positives. The first occurrence is never reported.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold!r}")
    if len(texts) < 2:
        return {}
    from datasketch import MinHash, MinHashLSH

    shingle_sets = [_shingles(t) for t in texts]
    lsh = MinHashLSH(num_perm=num_perm, params=lsh_bands(threshold, num_perm))
    sketches = MinHash.generator(
        ([s.encode("utf-8") for s in shingles] for shingles in shingle_sets),
        num_perm=num_perm,
        seed=seed,
    )
    found: dict[int, int] = {}
    for i, (shingles, sketch) in enumerate(zip(shingle_sets, sketches, strict=True)):
        if not shingles:
            continue
        for j in sorted(lsh.query(sketch)):
            if jaccard(shingles, shingle_sets[j]) >= threshold:
                found[i] = j
                break
        lsh.insert(i, sketch)
    return found


def near_duplicate_ratio(
    texts: Sequence[str], threshold: float = 0.9, num_perm: int = 128, seed: int = 1
) -> float:
    """Share of texts that have an earlier near-duplicate (see :func:`near_duplicates`)."""
    if len(texts) < 2:
        return 0.0
    return len(near_duplicates(texts, threshold, num_perm, seed)) / len(texts)
