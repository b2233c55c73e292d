"""The trace chain of one served answer, from the request log back to the documents.

answer -> model version -> MLflow run -> dataset version (the run's tags/params) -> LanceDB
table version -> Dagster runs -> documents and pages. Pure: the Dagster part comes from a
callable the caller passes (the CLI reads the Dagster instance), so this module stays free of
Dagster and is testable alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RUN_TAGS = ("dataset_version", "base_model_version", "base_model", "dagster_run_id",
            "git_commit", "llmops.kind")
RUN_PARAMS = ("dataset_path", "base_model_dir", "max_steps", "learning_rate", "lora_r")


def model_lineage(model_name: str, version: str) -> dict[str, Any]:
    """The registered version, its MLflow run, and the dataset the run trained on."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    out: dict[str, Any] = {"model": model_name, "version": str(version)}
    try:
        mv = client.get_model_version(model_name, str(version))
    except MlflowException as err:
        out["error"] = f"model version not found in {mlflow.get_registry_uri()}: {err}"
        return out
    out.update(run_id=mv.run_id, source=mv.source, aliases=sorted(mv.aliases or []),
               version_tags={k: v for k, v in (mv.tags or {}).items()
                             if not k.startswith("metric.")})
    if not mv.run_id:
        return out
    try:
        run = client.get_run(mv.run_id)
    except MlflowException as err:
        out["run_error"] = str(err)
        return out
    tags, params = run.data.tags, run.data.params
    out["run"] = {
        "run_id": mv.run_id, "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id, "status": run.info.status,
        "tags": {k: tags[k] for k in RUN_TAGS if k in tags},
        "params": {k: params[k] for k in RUN_PARAMS if k in params},
        "metrics": dict(run.data.metrics),
    }
    inputs = getattr(run, "inputs", None)
    datasets = []
    for inp in getattr(inputs, "dataset_inputs", None) or []:
        ds = inp.dataset
        datasets.append({"name": ds.name, "digest": ds.digest, "source": ds.source})
    out["dataset"] = {
        "version": tags.get("dataset_version"), "path": params.get("dataset_path"),
        "inputs": datasets,
    }
    return out


def trace_request(
    record: Mapping[str, Any],
    dagster_runs: Callable[[Mapping[str, Any]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The whole chain for one request-log record (see ``serving.requestlog``)."""
    model = model_lineage(str(record["model"]), str(record["model_version"]))
    docs: dict[str, dict[str, Any]] = {}
    for c in record.get("citations") or []:
        doc = docs.setdefault(c["doc_id"], {"doc_id": c["doc_id"], "doc_name": c.get("doc_name"),
                                            "pages": set(), "chunks": []})
        if c.get("page") is not None:
            doc["pages"].add(int(c["page"]))
        doc["chunks"].append(c["chunk_id"])
    chain = {
        "request": {k: record.get(k) for k in ("request_id", "time", "key_id", "prompt",
                                                "latency_s", "tokens_in", "tokens_out", "cost")},
        "answer": record.get("answer"),
        "model": model,
        "dataset": model.get("dataset"),
        "lancedb": {"table": record.get("lancedb_table"),
                    "version": record.get("lancedb_version")},
        "dagster_runs": [],
        "documents": [{**d, "pages": sorted(d["pages"])} for d in docs.values()],
    }
    if dagster_runs is not None:
        try:
            chain["dagster_runs"] = dagster_runs(chain)
        except Exception as err:  # the chain is still useful without the instance
            chain["dagster_error"] = f"{type(err).__name__}: {err}"
    return chain


def format_trace(chain: Mapping[str, Any]) -> str:
    """The chain as indented text, one hop per line."""
    model = chain["model"]
    run = model.get("run") or {}
    ds = chain.get("dataset") or {}
    lines = [
        f"request   {chain['request']['request_id']} at {chain['request']['time']} "
        f"by {chain['request']['key_id']}",
        f"question  {chain['request']['prompt']}",
        f"answer    {(chain.get('answer') or '')[:200]!r}",
        f"-> model    {model['model']} v{model['version']} {model.get('aliases', '')}"
        + (f" ({model['error']})" if model.get("error") else ""),
        f"-> mlflow   run {run.get('run_id', '-')} ({run.get('run_name', '-')}) "
        f"kind={run.get('tags', {}).get('llmops.kind', '-')}",
        f"-> dataset  version {ds.get('version') or '-'} at {ds.get('path') or '-'}",
        f"-> lancedb  table {chain['lancedb']['table']} version {chain['lancedb']['version']}",
    ]
    for r in chain.get("dagster_runs") or []:
        lines.append(f"-> dagster  {r.get('asset', '-')}: run {r.get('run_id')} "
                     f"({r.get('status', '-')}, {r.get('time', '-')})")
    if chain.get("dagster_error"):
        lines.append(f"-> dagster  unavailable: {chain['dagster_error']}")
    for d in chain.get("documents") or []:
        pages = ",".join(map(str, d["pages"])) or "-"
        lines.append(f"-> document {d['doc_name']} ({d['doc_id']}) pages {pages}, "
                     f"{len(d['chunks'])} chunks")
    return "\n".join(lines)


# --------------------------------------------------------------------------- code versions
# Dagster marks an asset stale when its ``code_version`` changes. A hand-kept "1" never changes,
# so a new chunker or OCR setting left every stored chunk looking current. The versions below are
# hashes of the producing modules' code (comment lines excluded) plus the settings that shape
# the output.

_source_cache: dict[str, str] = {}
_settings_cache: dict[tuple[str, int], dict[str, Any]] = {}


def _module_files(module: str) -> list[Path]:
    """The .py files of a module or of a whole package, located without importing them."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"code_version: module {module!r} not found")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: every module in it
        return sorted(p for p in origin.parent.rglob("*.py") if "__pycache__" not in p.parts)
    return [origin]


def _code_digest(path: Path) -> str:
    """sha256 of the module's lines without comment-only and blank lines or trailing spaces.

    Parsing to a syntax tree would also ignore docstrings but costs ~0.3 s for ``llmops`` at
    every code-location load; a line filter costs under 10 ms. A docstring edit therefore
    still marks the asset stale (a false "stale" costs a re-run someone chooses; a missed one
    serves outdated data).
    """
    key = str(path)
    if key not in _source_cache:
        lines = (line.rstrip() for line in path.read_text(encoding="utf-8").splitlines())
        kept = "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))
        _source_cache[key] = hashlib.sha256(kept.encode()).hexdigest()
    return _source_cache[key]


def code_version(*modules: str, settings: Any = None, base: str = "") -> str:
    """A short, stable hash of the code of ``modules`` (packages include every submodule) and
    of ``settings`` (any JSON-able value: the config that shapes the output).

    ``base`` is a manual bump for changes outside these modules (a new output format).
    Cheap enough for import time: a few ms for the whole of ``llmops``, cached per file.
    """
    digest = hashlib.sha256(base.encode())
    root = Path(__file__).resolve().parents[1]
    for module in sorted(set(modules)):
        for path in _module_files(module):
            rel = path.relative_to(root) if path.is_relative_to(root) else path
            digest.update(f"{rel.as_posix()}:{_code_digest(path)}\n".encode())
    if settings is not None:
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return f"{base + '-' if base else ''}{digest.hexdigest()[:12]}"


def resource_settings(*names: str, env: str | None = None) -> dict[str, Any]:
    """The ``resources.<name>.config`` sections of configs/<LLMOPS_ENV>.yaml, raw (an
    ``{env: VAR}`` reference stays a reference: secrets never enter a version).

    Lets a code version include the settings that shape an asset's output, so editing e.g.
    ``structuring.max_tokens`` marks the chunks stale. Empty when the file is absent.
    """
    import os

    import yaml

    env = env or os.environ.get("LLMOPS_ENV", "local")
    path = Path(__file__).resolve().parents[1] / "configs" / f"{env}.yaml"
    if not path.is_file():
        return {}
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _settings_cache:  # one parse per file per process (pure-Python YAML is slow)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        _settings_cache[key] = raw.get("resources") or {}
    resources = _settings_cache[key]
    return {n: ((resources.get(n) or {}).get("config") or {}) for n in names}


def entities_version(backend: str = "rules") -> str:
    """Who extracted a chunk's entities: the extractor code, its version constant, the NER
    backend (``rules`` or ``spacy:<model>``) and that model's package version.

    Stored per row in LanceDB, so rows extracted by an older extractor are rewritten.
    """
    from importlib import metadata

    from llmops.entities import EXTRACTOR_VERSION

    model_version = ""
    if backend.startswith("spacy:"):
        package = backend.removeprefix("spacy:")
        try:
            model_version = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            model_version = "?"
    return code_version("llmops.entities", settings=[backend, model_version],
                        base=str(EXTRACTOR_VERSION))
