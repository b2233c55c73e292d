"""MLflow tracking and model registry for base and fine-tuned models (pure mlflow, no Dagster).

How models are logged, and why: each model version is an MLflow **pyfunc** model whose
artifacts are the plain Hugging Face folders (``model/`` = full model or LoRA adapter,
``base/`` = the base model an adapter needs, when it is small enough to carry). This works
offline with any local model (``mlflow.transformers.log_model`` wants to resolve hub metadata
and records only a hub name for PEFT bases), the registered version is self-contained and
servable (``mlflow models serve``), and ``load_model_version`` gives evaluation the same
model + tokenizer without going through pyfunc.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHALLENGER = "challenger"
CHAMPION = "champion"
DEFAULT_EXPERIMENT = "llmops"
MAX_EMBEDDED_BASE_MB = 512.0  # bases up to this size travel inside the registered version
PIP_REQUIREMENTS = ["mlflow", "torch", "transformers", "peft", "safetensors"]
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PER_STEP_METRICS = ("loss", "learning_rate", "grad_norm", "eval_loss", "num_input_tokens_seen")


@dataclass
class RegisteredRun:
    """Where a logged run and its registered model version live."""

    run_id: str
    experiment_id: str
    model_name: str
    version: str
    model_uri: str
    artifact_uri: str
    tracking_uri: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- setup


def configure(
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment: str | None = None,
) -> str:
    """Point mlflow at the stores (arguments, else MLFLOW_* env) and return the experiment id.

    A new experiment on a local SQLite store keeps its artifacts next to the database
    (``<db dir>/artifacts``) rather than in ``./mlruns`` of whatever the working directory is.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri or os.environ.get("MLFLOW_REGISTRY_URI"):
        mlflow.set_registry_uri(registry_uri or os.environ["MLFLOW_REGISTRY_URI"])
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is None:
        found_id = client.create_experiment(name, artifact_location=_artifact_location())
    else:
        found_id = found.experiment_id
    mlflow.set_experiment(experiment_id=found_id)
    return found_id


def _artifact_location() -> str | None:
    import mlflow

    explicit = os.environ.get("MLFLOW_ARTIFACT_LOCATION")
    if explicit:
        return explicit
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").resolve().as_uri()
    return None  # a tracking server decides (its --default-artifact-root / proxied artifacts)


def git_commit(cwd: str | Path = PROJECT_ROOT) -> str | None:
    """The project's commit, when the code runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# --------------------------------------------------------------------------- pyfunc model


def _pyfunc_model() -> Any:
    """A PythonModel that generates text from the HF folders; built lazily (mlflow is heavy).

    Defined inside a function so cloudpickle stores the class by value: loading the registered
    model needs mlflow/transformers/peft, not this project's package.
    """
    import mlflow.pyfunc

    class CausalLMModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            from pathlib import Path as _Path

            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model_dir = _Path(context.artifacts["model"])
            base_dir = context.artifacts.get("base")
            if (model_dir / "adapter_config.json").is_file():
                cfg = json.loads((model_dir / "adapter_config.json").read_text())
                base = AutoModelForCausalLM.from_pretrained(
                    base_dir or cfg["base_model_name_or_path"]
                )
                self.model = PeftModel.from_pretrained(base, str(model_dir))
            else:
                self.model = AutoModelForCausalLM.from_pretrained(str(model_dir))
            self.model.eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

        def predict(self, context: Any, model_input: Any, params: dict | None = None) -> list:
            import torch

            prompts = (
                model_input.iloc[:, 0].tolist()
                if hasattr(model_input, "iloc")
                else list(model_input)
            )
            max_new = int((params or {}).get("max_new_tokens", 64))
            outputs = []
            for prompt in prompts:
                ids = self.tokenizer(prompt, return_tensors="pt")
                with torch.no_grad():
                    gen = self.model.generate(
                        **ids, max_new_tokens=max_new, do_sample=False,
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    )
                outputs.append(
                    self.tokenizer.decode(gen[0, ids["input_ids"].shape[1] :],
                                          skip_special_tokens=True)
                )
            return outputs

    return CausalLMModel()


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _log_and_register(
    model_dir: Path,
    model_name: str,
    version_tags: Mapping[str, Any],
    base_dir: Path | None = None,
) -> tuple[str, str]:
    """Log the pyfunc model in the active run and register it; returns (version, model_uri)."""
    import mlflow

    artifacts = {"model": str(model_dir)}
    if base_dir is not None and _folder_mb(base_dir) <= MAX_EMBEDDED_BASE_MB:
        artifacts["base"] = str(base_dir)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=_pyfunc_model(),
        artifacts=artifacts,
        pip_requirements=PIP_REQUIREMENTS,
        metadata={k: str(v) for k, v in version_tags.items()},
    )
    mv = mlflow.register_model(
        info.model_uri, model_name, tags={k: str(v) for k, v in version_tags.items()}
    )
    return str(mv.version), info.model_uri


# --------------------------------------------------------------------------- logging


def _flat_params(cfg: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        out[key] = str(value)[:500]
    return out


def _step_metrics(history: list[dict[str, Any]]) -> list[Any]:
    """Per-step metrics from the Trainer log history (train loss logged as ``loss``)."""
    from mlflow.entities import Metric

    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = []
    for entry in history:
        step = int(entry.get("step", 0))
        for key in PER_STEP_METRICS:
            value = entry.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                metrics.append(Metric(key, float(value), now, step))
    return metrics


def _log_dataset(dataset_path: str, dataset_version: str) -> None:
    """Each split as an MLflow dataset input whose digest is the project's dataset version."""
    import mlflow
    from datasets import load_from_disk

    dsd = load_from_disk(dataset_path)
    for split, context in (("train", "training"), ("validation", "validation"), ("test", "test")):
        if split in dsd and len(dsd[split]):
            ds = mlflow.data.from_pandas(
                dsd[split].to_pandas(),
                source=dataset_path,
                name=f"instruction_dataset-{split}",
                digest=dataset_version[:36],
            )
            mlflow.log_input(ds, context=context)


def training_tags(
    *,
    dataset_version: str,
    base_model_dir: str,
    base_model_version: str,
    dagster_run_id: str | None = None,
    asset_key: str | None = None,
) -> dict[str, str]:
    """Tags tying a training run (and its model version) to its inputs, code and Dagster."""
    commit = git_commit()
    tags = {
        "llmops.kind": "lora",
        "dataset_version": dataset_version,
        "base_model": base_model_dir,
        "base_model_version": base_model_version,
        "dagster_run_id": dagster_run_id or "",
        "dagster_asset_key": asset_key or "",
        "git_commit": commit or "",
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


@dataclass
class LiveRun:
    """An MLflow run opened when training starts; every Trainer log goes in as it happens."""

    run_id: str
    experiment_id: str

    def log_step(self, entry: Mapping[str, Any]) -> None:
        """One Trainer log entry at its step, stamped with the time it was logged."""
        from mlflow.entities import Metric

        now = int(datetime.now(UTC).timestamp() * 1000)
        step = int(entry.get("step", 0))
        metrics = [
            Metric(key, float(value), now, step)
            for key in PER_STEP_METRICS
            if isinstance(value := entry.get(key), int | float) and math.isfinite(value)
        ]
        if metrics:
            _client().log_batch(self.run_id, metrics=metrics)

    def end(self, status: str) -> None:
        _client().set_terminated(self.run_id, status=status)


def start_training_run(
    experiment_id: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
) -> LiveRun:
    """Open the training run (``experiment_id`` from ``configure``) with its params and tags."""
    from mlflow.entities import Param

    client = _client()
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    client.log_batch(run.info.run_id,
                     params=[Param(k, v) for k, v in _flat_params(params).items()])
    return LiveRun(run.info.run_id, experiment_id)


def log_training_run(
    result: Any,
    *,
    model_name: str,
    base_model_dir: str,
    base_model_version: str,
    dataset_path: str,
    dataset_version: str,
    metrics: Mapping[str, float] | None = None,
    dagster_run_id: str | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment: str | None = None,
    alias: str = CHALLENGER,
    run_id: str | None = None,
    asset_key: str | None = None,
) -> RegisteredRun:
    """Log a finished LoRA run and register its model as a new version aliased ``challenger``.

    ``result`` is a ``TrainResult`` (or its dict). ``run_id``: the run ``start_training_run``
    opened, which already holds the config and the live per-step metrics; without it a new run
    gets them from the log history. Logged: final ``metrics`` (e.g. test perplexities), dataset
    splits as inputs (digest = dataset version), adapter/tokenizer/config/loss-curve artifacts,
    and tags tying the run to the dataset version, base model, git commit and Dagster.
    """
    import mlflow

    res = result if isinstance(result, dict) else result.to_dict()
    experiment_id = configure(tracking_uri, registry_uri, experiment)
    tags = training_tags(dataset_version=dataset_version, base_model_dir=base_model_dir,
                         base_model_version=base_model_version, dagster_run_id=dagster_run_id,
                         asset_key=asset_key)
    final = {k: float(v) for k, v in (metrics or {}).items() if v is not None}
    for key in ("train_loss", "eval_loss_start", "eval_loss_best", "eval_loss_final",
                "tokens_per_second", "train_runtime_s"):
        if isinstance(res.get(key), int | float):
            final.setdefault(key, float(res[key]))
    out = Path(res["output_dir"])
    opened = (mlflow.start_run(run_id=run_id) if run_id
              else mlflow.start_run(run_name=f"lora-{dataset_version[:8]}", tags=tags))
    with opened as run:
        client = mlflow.MlflowClient()
        if run_id is None:
            mlflow.log_params({**_flat_params(res.get("config", {})),
                               "base_model_dir": base_model_dir, "dataset_path": dataset_path})
            step_metrics = _step_metrics(res.get("log_history", []))
            for start in range(0, len(step_metrics), 900):
                client.log_batch(run.info.run_id, metrics=step_metrics[start : start + 900])
        mlflow.log_params({"trainable_params": res.get("trainable_params"),
                           "resumed_from_step": res.get("resumed_step", 0)})
        mlflow.log_metrics(final)
        _log_dataset(dataset_path, dataset_version)
        mlflow.log_artifacts(res["adapter_dir"], artifact_path="adapter")
        for name in ("train_config.json", "log_history.json", "train_result.json",
                     "loss_curve.png"):
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
        model_dir = Path(res.get("merged_dir") or res["adapter_dir"])
        version_tags = {
            **{k: v for k, v in tags.items() if not k.startswith("mlflow.")},
            **{f"metric.{k}": round(v, 6) for k, v in final.items()},
        }
        version, model_uri = _log_and_register(
            model_dir, model_name, version_tags,
            base_dir=None if res.get("merged_dir") else Path(base_model_dir),
        )
        client.set_registered_model_alias(model_name, alias, version)
        return RegisteredRun(
            run_id=run.info.run_id,
            experiment_id=experiment_id,
            model_name=model_name,
            version=version,
            model_uri=model_uri,
            artifact_uri=run.info.artifact_uri,
            tracking_uri=mlflow.get_tracking_uri(),
        )


def _alias_version(client: Any, name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_base_as_champion(
    info: Any,
    model_name: str,
    dagster_run_id: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment: str | None = None,
) -> str | None:
    """Register the base model as version ``champion`` when no champion exists yet.

    A first challenger then has something to be compared with; an existing champion (a
    promoted fine-tune) is never replaced here. Returns the new version, or None.
    """
    import mlflow

    configure(tracking_uri, registry_uri, experiment)
    client = mlflow.MlflowClient()
    if _alias_version(client, model_name, CHAMPION) is not None:
        return None
    data = info if isinstance(info, dict) else info.to_dict()
    tags = {
        "llmops.kind": "base",
        "base_model": data["source"],
        "base_model_version": data["version"],
        "dagster_run_id": dagster_run_id or "",
        "git_commit": git_commit() or "",
    }
    with mlflow.start_run(run_name=f"base-{data['version'][:8]}", tags=tags) as run:
        mlflow.log_params(
            {k: data[k] for k in ("source", "arch", "n_params", "vocab_size", "max_length")
             if k in data}
        )
        for step, loss in enumerate(data.get("pretrain_losses") or []):
            if step % 5 == 0 or step == len(data["pretrain_losses"]) - 1:
                mlflow.log_metric("pretrain_loss", loss, step=step)
        final = {k: float(v) for k, v in (metrics or {}).items()}
        for key in ("pretrain_loss_start", "pretrain_loss_end"):
            if isinstance(data.get(key), int | float):
                final[key] = float(data[key])
        mlflow.log_metrics(final)
        version_tags = {**tags, **{f"metric.{k}": round(v, 6) for k, v in final.items()}}
        version, _ = _log_and_register(Path(data["path"]), model_name, version_tags)
        client.set_registered_model_alias(model_name, CHAMPION, version)
        _ = run
    return version


# --------------------------------------------------------------------------- reading


def list_models(name: str) -> list[dict[str, Any]]:
    """Every version of a registered model with aliases, tags and its key metrics (CLI view)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    if not versions:
        return []
    # search_model_versions leaves aliases empty on some stores; the registered model has them.
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in versions:
        tags = dict(mv.tags or {})
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(set(mv.aliases or []) | set(aliases.get(str(mv.version), []))),
                "tags": {k: v for k, v in tags.items() if not k.startswith("metric.")},
                "metrics": {
                    k.removeprefix("metric."): _to_float(v)
                    for k, v in tags.items()
                    if k.startswith("metric.")
                },
                "run_id": mv.run_id,
                "source": mv.source,
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]))


def _to_float(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def resolve_version(name: str, ref: str | int) -> str:
    """A version number from an alias (``champion``) or a number."""
    import mlflow

    text = str(ref)
    if text.isdigit():
        return text
    mv = _alias_version(mlflow.MlflowClient(), name, text)
    if mv is None:
        raise LookupError(f"registered model {name!r} has no alias {text!r}")
    return str(mv.version)


def download_model_version(name: str, ref: str | int, dst: str | Path | None = None) -> dict:
    """Download a version; returns local folders ``{"root", "model", "base" (or None)}``."""
    import mlflow
    import yaml

    version = resolve_version(name, ref)
    target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix=f"{name}-v{version}-"))
    root = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(target)
        )
    )
    spec = yaml.safe_load((root / "MLmodel").read_text())
    artifacts = spec["flavors"]["python_function"].get("artifacts", {})
    base = artifacts.get("base")
    return {
        "root": root,
        "model": root / artifacts["model"]["path"],
        "base": root / base["path"] if base else None,
    }


def load_model_version(name: str, ref: str | int) -> tuple[Any, Any]:
    """(model, tokenizer) of a registered version, ready for ``training.perplexity``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmops.training import load_tokenizer

    paths = download_model_version(name, ref)
    model_dir = paths["model"]
    if (model_dir / "adapter_config.json").is_file():
        base_dir = paths["base"] or Path(
            json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        )
        model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(str(base_dir)), str(model_dir)
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    return model, load_tokenizer(model_dir)


# --------------------------------------------------------------------------- aliases (promotion)

PREVIOUS_CHAMPION = "previous_champion"


class StaleChampionError(RuntimeError):
    """The champion moved between the A/B comparison and the promotion."""


class RollbackError(LookupError):
    """There is no previous champion to restore."""


def _client() -> Any:
    import mlflow

    return mlflow.MlflowClient()


def get_alias_version(name: str, alias: str) -> str | None:
    """The version an alias points to, or None (no such alias or model)."""
    mv = _alias_version(_client(), name, alias)
    return None if mv is None else str(mv.version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    _client().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    import contextlib

    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already absent
        _client().delete_registered_model_alias(name, alias)


def tag_version(name: str, version: str | int, tags: Mapping[str, Any]) -> None:
    """Set model-version tags (values stringified; MLflow caps a tag value at 5000 chars)."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value)[:5000])


def alias_snapshot(name: str) -> dict[str, str | None]:
    """champion / challenger / previous_champion versions right now."""
    return {a: get_alias_version(name, a) for a in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)}


def _verify(name: str, expected: Mapping[str, str | None]) -> None:
    actual = {alias: get_alias_version(name, alias) for alias in expected}
    if actual != dict(expected):
        raise RuntimeError(
            f"registered model {name!r}: aliases are {actual} after the move, expected "
            f"{dict(expected)} (a concurrent change?); inspect with `llmops models`"
        )


def promote_challenger(
    name: str,
    version: str | int,
    *,
    expected_champion: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> dict[str, str | None]:
    """``champion`` -> ``version``, the old champion -> ``previous_champion``, then verify.

    MLflow has no multi-alias transaction, so the order limits what a crash can leave: the
    champion moves first (serving picks up the new model), then the old one is remembered, then
    both are read back. ``expected_champion`` guards against promoting on stale evidence.
    """
    version = str(version)
    old = get_alias_version(name, CHAMPION)
    if expected_champion is not None and old != str(expected_champion):
        raise StaleChampionError(
            f"registered model {name!r}: champion is v{old}, the evidence compared against "
            f"v{expected_champion}; re-run the A/B comparison"
        )
    if old == version:
        return {"champion": version, "previous_champion": get_alias_version(name,
                                                                              PREVIOUS_CHAMPION)}
    set_alias(name, CHAMPION, version)
    if old is not None:
        set_alias(name, PREVIOUS_CHAMPION, old)
    if tags:
        tag_version(name, version, tags)
    expected = {CHAMPION: version, PREVIOUS_CHAMPION: old} if old else {CHAMPION: version}
    _verify(name, expected)
    return {"champion": version, "previous_champion": old}


def rollback_champion(name: str, reason: str = "manual rollback") -> dict[str, str]:
    """Restore ``previous_champion`` as ``champion`` and drop ``previous_champion``.

    One step of history: a second rollback without a promotion in between is an error, so a
    rollback never silently oscillates between two versions.
    """
    previous = get_alias_version(name, PREVIOUS_CHAMPION)
    if previous is None:
        raise RollbackError(
            f"registered model {name!r} has no {PREVIOUS_CHAMPION!r} alias: nothing to roll "
            "back to (no promotion since the last rollback)"
        )
    current = get_alias_version(name, CHAMPION)
    set_alias(name, CHAMPION, previous)
    delete_alias(name, PREVIOUS_CHAMPION)
    stamp = datetime.now(UTC).isoformat()
    if current is not None and current != previous:
        tag_version(name, current, {"rollback.demoted_at": stamp, "rollback.reason": reason})
    tag_version(name, previous, {"rollback.restored_at": stamp})
    _verify(name, {CHAMPION: previous, PREVIOUS_CHAMPION: None})
    return {"champion": previous, "demoted": current or ""}
