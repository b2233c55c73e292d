"""Out-of-process training entry point: ``python -m llmops.train_entry``.

Launched by Dagster Pipes (a local subprocess, a Kubernetes pod or a GPU host: the same code),
it reads its parameters from the Pipes context extras, streams every training log back as a
Dagster log line plus a custom message, and ends with one asset materialization carrying the
final metrics. Without Pipes it runs standalone for debugging::

    python -m llmops.train_entry --config params.json [--no-mlflow] [--result result.json]

Parameters (extras or the JSON file): ``train`` (TrainConfig fields), ``base_model_dir``,
``base_model_version``, ``dataset_path``, ``dataset_version``, ``output_dir``,
``registered_model``, ``dagster_run_id``, ``asset_key``, ``mlflow_ui_url``; optional ``mlflow``
(default true),
``tracking_uri``, ``experiment``, ``eval_split`` (default test), ``max_eval_examples``.
MLflow settings otherwise come from the MLFLOW_* environment the launcher sets.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REQUIRED = ("train", "base_model_dir", "dataset_path", "output_dir")
Log = Callable[[str], None]
Report = Callable[[dict[str, Any]], None]


def _fmt(entry: dict[str, Any]) -> str:
    keys = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")
    parts = [f"{k}={entry[k]:.4g}" for k in keys if isinstance(entry.get(k), int | float)]
    return f"step {entry.get('step')}: " + " ".join(parts)


def _eval_rows(dataset_path: str, split: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
    from datasets import load_from_disk

    dsd = load_from_disk(dataset_path)
    for name in (split, "test", "validation"):
        if name in dsd and len(dsd[name]):
            return name, [dict(r) for r in dsd[name].select(range(min(limit, len(dsd[name]))))]
    raise ValueError(f"dataset {dataset_path}: no non-empty split to evaluate perplexity on")


def _already_registered(out: Path, fingerprint: str) -> dict[str, Any] | None:
    """The registration of this exact run, if a previous attempt got that far."""
    marker = out / "registered.json"
    if not marker.is_file():
        return None
    data = json.loads(marker.read_text())
    if data.get("fingerprint") != fingerprint:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.MlflowClient().get_model_version(data["model_name"], data["version"])
    except MlflowException:
        return None
    return data


def run(params: dict[str, Any], log: Log = print, report: Report | None = None) -> dict[str, Any]:
    """Validate -> open the MLflow run -> train (resuming, metrics logged live) -> base vs
    fine-tuned perplexity -> register; returns metrics.

    The MLflow run is opened before the first step so a failed run ends FAILED and a killed one
    stays RUNNING with every step it logged: its trace is there either way.
    """
    missing = [k for k in REQUIRED if not params.get(k)]
    if missing:
        raise ValueError(f"train_entry: missing parameter(s) {missing}; got {sorted(params)}")
    from llmops.training import TrainConfig, validate

    cfg = TrainConfig.from_dict(dict(params["train"]))
    base_dir, dataset_path = str(params["base_model_dir"]), str(params["dataset_path"])
    out = Path(params["output_dir"])
    facts = validate(cfg, base_dir, dataset_path)
    log(f"validated: arch={facts['arch']} targets={facts['target_modules']} "
        f"splits={facts.get('splits')}")
    use_mlflow = bool(params.get("mlflow", True) and params.get("registered_model"))
    fingerprint = cfg.fingerprint(base_dir, dataset_path)
    if not use_mlflow:
        return _finish(out, params, _train_and_score(params, cfg, log, report, live=None))

    from llmops import registry

    experiment_id = registry.configure(params.get("tracking_uri"), params.get("registry_uri"),
                                       params.get("experiment"))
    done = _already_registered(out, fingerprint)
    if done:
        log(f"already registered as {done['model_name']} v{done['version']}; not again")
        metrics = _train_and_score(params, cfg, log, report, live=None)
        metrics.update({k: done[k] for k in ("mlflow_run_id", "model_version", "model_uri")})
        return _finish(out, params, metrics)
    live = registry.start_training_run(
        experiment_id,
        run_name=f"lora-{str(params.get('dataset_version', ''))[:8]}",
        tags=registry.training_tags(
            dataset_version=str(params.get("dataset_version", "")),
            base_model_dir=base_dir,
            base_model_version=str(params.get("base_model_version", "")),
            dagster_run_id=params.get("dagster_run_id"),
            asset_key=params.get("asset_key"),
        ),
        params={**cfg.to_dict(), "target_modules": facts["target_modules"],
                "base_model_dir": base_dir, "dataset_path": dataset_path},
    )
    log(f"MLflow run {live.run_id} open; metrics are logged as training goes")
    try:
        metrics = _train_and_score(params, cfg, log, report, live=live)
        reg = registry.log_training_run(
            metrics.pop("_result"),
            model_name=params["registered_model"],
            base_model_dir=base_dir,
            base_model_version=str(params.get("base_model_version", "")),
            dataset_path=dataset_path,
            dataset_version=str(params.get("dataset_version", "")),
            metrics={k: v for k, v in metrics.items()
                     if k.endswith(("perplexity", "perplexity_base", "ratio"))},
            dagster_run_id=params.get("dagster_run_id"),
            run_id=live.run_id,
            asset_key=params.get("asset_key"),
        )
    except BaseException:
        live.end("FAILED")
        raise
    live.end("FINISHED")
    metrics.update(mlflow_run_id=reg.run_id, model_version=reg.version, model_uri=reg.model_uri,
                   mlflow_experiment_id=reg.experiment_id)
    (out / "registered.json").write_text(json.dumps(
        {"fingerprint": fingerprint, "model_name": reg.model_name,
         "version": reg.version, "mlflow_run_id": reg.run_id,
         "model_version": reg.version, "model_uri": reg.model_uri}
    ))
    log(f"MLflow run {reg.run_id}; registered {reg.model_name} v{reg.version} as challenger")
    return _finish(out, params, metrics)


def _finish(out: Path, params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    metrics.pop("_result", None)
    if params.get("registered_model"):
        metrics["registered_model"] = params["registered_model"]
    ui = params.get("mlflow_ui_url")
    if ui and metrics.get("mlflow_run_id") and metrics.get("mlflow_experiment_id"):
        metrics["mlflow_run_url"] = (f"{ui.rstrip('/')}/#/experiments/"
                                     f"{metrics['mlflow_experiment_id']}/runs/"
                                     f"{metrics['mlflow_run_id']}")
    (out / "entry_result.json").write_text(json.dumps(metrics, indent=1, default=str))
    return metrics


def _train_and_score(
    params: dict[str, Any], cfg: Any, log: Log, report: Report | None, live: Any
) -> dict[str, Any]:
    """Train (or reuse the finished run) and score base vs fine-tuned perplexity."""
    from llmops.base_model import weights_hash
    from llmops.training import load_model, perplexity, train_lora

    base_dir, dataset_path = str(params["base_model_dir"]), str(params["dataset_path"])

    def on_log(entry: dict[str, Any]) -> None:
        log(_fmt(entry))
        if live is not None:
            live.log_step(entry)
        if report is not None:
            report({"event": "train_log", **entry})

    started = time.perf_counter()
    result = train_lora(cfg, base_dir, dataset_path, on_log=on_log,
                        output_dir=params["output_dir"])
    if result.resumed_from:
        log(f"resumed from {result.resumed_from} (step {result.resumed_step})")
    log(f"trained to step {result.global_step} in {result.train_runtime_s:.1f}s "
        f"({result.packing} batches, {result.n_dropped_examples} examples too long), "
        f"eval_loss {result.eval_loss_start} -> {result.eval_loss_best}")

    split, rows = _eval_rows(dataset_path, params.get("eval_split", "test"),
                             int(params.get("max_eval_examples", 500)))
    # Same device as training (GPU in bf16 when present) and the same trimmed tokens as the
    # validation loss (max_length), for base and fine-tuned alike.
    base_model, tok = load_model(base_dir)
    ppl_base = perplexity(base_model, tok, rows, max_length=cfg.max_length)
    del base_model
    ft_dir = result.merged_dir or result.adapter_dir
    ppl_ft = perplexity(ft_dir, data=rows, max_length=cfg.max_length)
    log(f"{split} perplexity ({len(rows)} examples): base {ppl_base:.3f}, "
        f"fine-tuned {ppl_ft:.3f}")
    return {
        f"{split}_perplexity_base": round(ppl_base, 4),
        f"{split}_perplexity": round(ppl_ft, 4),
        "perplexity_ratio": round(ppl_ft / ppl_base, 4),
        "global_step": result.global_step,
        "resumed_step": result.resumed_step,
        "stopped_early": result.stopped_early,
        "eval_loss_start": result.eval_loss_start,
        "eval_loss_best": result.eval_loss_best,
        "train_loss": result.train_loss,
        "train_tokens": result.train_tokens,
        "tokens_per_second": result.tokens_per_second,
        "trainable_params": result.trainable_params,
        "packing": result.packing,
        "dropped_examples": result.n_dropped_examples,
        "total_params": result.total_params,
        "output_dir": result.output_dir,
        "adapter_dir": result.adapter_dir,
        "merged_dir": result.merged_dir,
        "loss_curve_png": result.loss_curve_png,
        "eval_split": split,
        "model_version_hash": weights_hash(ft_dir),
        "seconds": round(time.perf_counter() - started, 2),
        "_result": result,
    }


def materialization_metadata(metrics: dict[str, Any]) -> dict[str, Any]:
    """Pipes metadata: typed paths, plain numbers, and a markdown summary table."""
    meta: dict[str, Any] = {}
    for key, value in metrics.items():
        if value is None:
            continue
        if key.endswith(("_dir", "_png")):
            meta[key] = {"raw_value": str(value), "type": "path"}
        elif key.endswith("_url"):
            meta[key] = {"raw_value": str(value), "type": "url"}
        elif isinstance(value, bool | int | float | str):
            meta[key] = value
    split = metrics.get("eval_split", "test")
    rows = [
        ("base model", metrics.get(f"{split}_perplexity_base")),
        ("fine-tuned", metrics.get(f"{split}_perplexity")),
    ]
    from llmops.text import markdown_table

    md = markdown_table([["model", f"{split} perplexity"], *rows])
    meta["summary"] = {"raw_value": md, "type": "md"}
    png = metrics.get("loss_curve_png")
    if png and Path(png).is_file():  # the UI renders the curve inline, no artifact store needed
        data = base64.b64encode(Path(png).read_bytes()).decode()
        meta["loss_curve"] = {"raw_value": f"![loss curve](data:image/png;base64,{data})",
                              "type": "md"}
    return meta


def _run_with_pipes() -> int:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        params = dict(pipes.extras)
        metrics = run(params, log=pipes.log.info, report=pipes.report_custom_message)
        pipes.report_asset_materialization(
            metadata=materialization_metadata(metrics),
            data_version=str(metrics["model_version_hash"]),
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Pipes when launched by Dagster; ``--config`` standalone otherwise."""
    parser = argparse.ArgumentParser(prog="python -m llmops.train_entry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file with the parameters (standalone run)")
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging")
    parser.add_argument("--result", help="write the final metrics JSON here")
    args = parser.parse_args(argv)

    from dagster_pipes import PipesEnvVarParamsLoader

    if args.config is None and PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return _run_with_pipes()
    if args.config is None:
        parser.error("not launched by Dagster Pipes: pass --config params.json")
    params = json.loads(Path(args.config).read_text())
    if args.no_mlflow:
        params["mlflow"] = False

    def log(msg: str) -> None:
        print(msg, flush=True)

    metrics = run(params, log=log)
    text = json.dumps(metrics, indent=1, default=str)
    if args.result:
        Path(args.result).write_text(text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
