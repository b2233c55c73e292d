"""`llmops`: the things a person does by hand, next to the Dagster UI.

Conventions: `--json` prints machine-readable output on stdout; human messages go to stderr;
exit code 0 = success, 1 = bad input or a failed step (the message names the input and the
reason), 2 = wrong usage. Dagster is imported only by the commands that orchestrate runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
PROJECT_ROOT = Path(__file__).resolve().parents[1]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _emit(payload: Any, as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2, default=str))
    else:
        typer.echo(human)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _resource(env: str | None, name: str) -> Any:
    """One resource from configs/<env>.yaml, initialised as in a run ({env: VAR} resolved)."""
    from pipelines.definitions import build_resources

    return build_resources(env)[name].process_config_and_initialize()


EnvOpt = Annotated[
    str | None, typer.Option("--env", help="configs/<env>.yaml (default: $LLMOPS_ENV or local).")
]


@app.command()
def extract(
    file: Annotated[Path, typer.Argument(exists=False)],
    as_json: JsonFlag = False,
    env: EnvOpt = None,
) -> None:
    """Extract one document exactly as the ingestion assets store it."""
    from llmops.ingestion import DocumentError, extract_document, inspect_document

    if not file.is_file():
        _fail(f"{file}: no such file")
    cfg = _resource(env, "ingestion").config()
    data = file.read_bytes()
    try:
        info = inspect_document(data, file.name, cfg)
        pages = extract_document(data, file.name, cfg)
    except DocumentError as err:
        _fail(str(err))
    payload = {"document": info.to_dict(), "pages": [p.to_dict() for p in pages]}
    human = "\n".join(
        f"--- page {p.page_number} [{p.method}, {p.language}, {p.char_count} chars]\n{p.text}"
        for p in pages
    )
    _emit(payload, as_json, f"{info.name}: {info.kind}, {info.page_count} pages\n{human}")


@app.command("ocr-cer")
def ocr_cer(
    directory: Path,
    languages: Annotated[str, typer.Option(help="tesseract languages")] = "ara",
    as_json: JsonFlag = False,
) -> None:
    """Character error rate of the OCR stage over *.png + *.gt.txt pairs."""
    from llmops.ocr import ocr_cer_dir

    if not directory.is_dir():
        _fail(f"{directory}: not a directory")
    report = ocr_cer_dir(directory, languages=languages)
    if not report.get("files"):
        _fail(f"{directory}: no *.png with a matching *.gt.txt")
    _emit(report, as_json, "\n".join(f"{k}: {v}" for k, v in report.items() if k != "files"))


@app.command()
def search(
    query: str,
    k: Annotated[int, typer.Option(min=1)] = 5,
    mode: Annotated[str, typer.Option(help="vector | fts | hybrid")] = "hybrid",
    as_json: JsonFlag = False,
    env: EnvOpt = None,
) -> None:
    """Search the knowledge base built by chunk_embeddings."""
    if mode not in {"vector", "fts", "hybrid"}:
        _fail(f"--mode {mode!r}: expected vector, fts or hybrid")
    embedder = _resource(env, "embedder").embedder
    store = _resource(env, "vector_store").open(dim=embedder.dim)
    if store.count() == 0:
        _fail(f"the knowledge base at {store.uri} is empty: run `make demo` or the lifecycle job")
    vector = embedder.encode([query])[0] if mode != "fts" else None
    hits = store.search(query, vector, k=k, mode=mode)
    human = "\n".join(
        f"{i}. [{h['score']:.4f}] {h['doc_id']} p{h.get('page_start')}: "
        f"{' '.join(h['text'].split())[:160]}"
        for i, h in enumerate(hits, 1)
    )
    _emit(hits, as_json, human or "no match")


# --- registry: champion / challenger / previous champion, the last decision, rollback


def _alias_view(rows: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    row = next((r for r in rows if alias in r["aliases"]), None)
    if row is None:
        return None
    return {k: row[k] for k in ("version", "aliases", "metrics", "created", "run_id")} | {
        "kind": row["tags"].get("llmops.kind"),
        "promotion": {k: v for k, v in row["tags"].items()
                      if k.startswith(("promotion.", "rollback."))},
    }


@app.command()
def models(as_json: JsonFlag = False, env: EnvOpt = None) -> None:
    """Champion, challenger, previous champion (metrics, created) and the last decision."""
    from llmops.promotion import last_decision
    from llmops.registry import list_models

    mlflow = _resource(env, "mlflow")
    mlflow.activate()
    name = mlflow.registered_model
    rows = list_models(name)
    payload = {
        "model": name,
        **{a: _alias_view(rows, a) for a in ("champion", "challenger", "previous_champion")},
        "last_decision": last_decision(name),
        "versions": rows,
    }
    if not rows:
        _emit(payload, as_json, f"no version of {name} registered yet: run `make demo`")
        return
    lines = [f"{name}: {len(rows)} versions"]
    for alias in ("champion", "challenger", "previous_champion"):
        view = payload[alias]
        if view is None:
            lines.append(f"  {alias:<18} -")
            continue
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in sorted(view["metrics"].items())[:6])
        lines.append(f"  {alias:<18} v{view['version']} ({view['kind'] or '?'}, "
                     f"created {view['created'][:19]}) {metrics}")
    last = payload["last_decision"]
    if last:
        failed = ", ".join(last.get("failed_gates") or []) or "none"
        lines.append(f"  last decision      {last['decision_id']} at {last['recorded_at'][:19]}: "
                     f"{last['outcome']} v{last['challenger_version']} vs "
                     f"v{last['champion_version']}; failed gates: {failed}")
        lines += [f"    - {r}" for r in last.get("reasons") or []]
    else:
        lines.append("  last decision      none yet")
    _emit(payload, as_json, "\n".join(lines))


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Recorded in the history and the tags.")] = (
        "manual rollback"
    ),
    as_json: JsonFlag = False,
    env: EnvOpt = None,
) -> None:
    """Restore `previous_champion` as `champion` (recorded in the promotion history)."""
    from llmops.promotion import RollbackError
    from llmops.promotion import rollback as do_rollback

    mlflow = _resource(env, "mlflow")
    mlflow.activate()
    try:
        outcome = do_rollback(mlflow.registered_model, reason=reason,
                              experiment=mlflow.experiment)
    except RollbackError as err:
        _fail(str(err))
    _emit(outcome.to_dict(), as_json, outcome.message)


# --- end registry


@app.command()
def quarantine(as_json: JsonFlag = False, env: EnvOpt = None) -> None:
    """Documents rejected by ingestion, with the reason."""
    entries = list(_resource(env, "docs").quarantine.latest().values())
    human = "\n".join(f"{e['name']}: {e['status']} [{e['code']}] {e['reason']}" for e in entries)
    _emit(entries, as_json, human or "no document quarantined")


@app.command("restore-documents")
def restore_documents(
    keys: Annotated[
        list[str] | None, typer.Argument(help="Document ids (default: the last removal).")
    ] = None,
    as_json: JsonFlag = False,
    env: EnvOpt = None,
) -> None:
    """Undo a partition removal: stored copies go back into the inbox, partitions are re-added."""
    import dagster as dg

    from assets.partitions import restore_removed_documents

    docs = _resource(env, "docs")
    with dg.DagsterInstance.get() as instance:
        try:
            outcome, sync = restore_removed_documents(instance, docs, keys or None)
        except ValueError as err:
            _fail(str(err))
    human = "\n".join(f"{k}: {v}" for k, v in outcome.items())
    _emit({"documents": outcome, "re_added": sync.added}, as_json,
          f"{human}\nre-added {len(sync.added)} partitions")


def _dagster(args: list[str], env: str | None) -> subprocess.CompletedProcess[str]:
    cfg = f"configs/{env or os.environ.get('LLMOPS_ENV', 'local')}.yaml"
    cmd = ["dagster", "job", "execute", "-m", "pipelines.definitions", "-c", cfg, *args]
    exe = Path(sys.executable).with_name("dagster")
    cmd[0] = str(exe) if exe.exists() else "dagster"
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)


@app.command()
def ingest(
    workers: Annotated[int, typer.Option(min=1)] = 2,
    retry_quarantined: Annotated[
        bool, typer.Option(help="Also retry documents rejected before (same content).")
    ] = False,
    allow_mass_removal: Annotated[
        bool, typer.Option(help="Drop partitions even if more than max_removal_share left.")
    ] = False,
    env: EnvOpt = None,
) -> None:
    """Register inbox files as partitions and ingest the new ones, `workers` at a time.

    A document rejected for its content is quarantined and reported, and the command still
    succeeds; any other failure of a run exits with 1.
    """
    import dagster as dg

    from assets.partitions import sync_document_partitions

    docs = _resource(env, "docs")
    with dg.DagsterInstance.get() as instance:
        sync = sync_document_partitions(instance, docs, allow_mass_removal or None)
        if sync.refused:
            _fail(sync.report)
        done = set(instance.get_materialized_partitions(dg.AssetKey("entities")))
    files = docs.inbox_files()
    rejected = docs.quarantine.open_entries()
    todo = [
        k
        for k in sync.current
        if k not in done and (retry_quarantined or files[k].sha256 not in rejected)
    ]
    typer.echo(
        f"inbox: {len(sync.current)} documents, {len(sync.added)} new, {len(sync.removed)} "
        f"dropped; ingesting {len(todo)}",
        err=True,
    )

    def run(key: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        tags = json.dumps({"dagster/partition": key})
        return key, _dagster(["-j", "ingest_documents", "--tags", tags], env)

    ok = quarantined = 0
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for key, proc in pool.map(run, todo):
            entry = docs.quarantine.open_entries().get(files[key].sha256)
            if proc.returncode == 0:
                ok += 1
                typer.echo(f"  ok           {key}", err=True)
            elif entry is not None:
                quarantined += 1
                typer.echo(f"  quarantined  {key}: [{entry['code']}] {entry['reason']}", err=True)
            else:
                errors.append(key)
                typer.echo(f"  FAILED       {key}\n{(proc.stdout + proc.stderr)[-3000:]}", err=True)
    typer.echo(
        f"ingested {ok}/{len(todo)}, quarantined {quarantined}, failed {len(errors)}", err=True
    )
    if errors:
        raise typer.Exit(1)


def _materialize(select: str, env: str | None, partition: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
    """`dagster asset materialize` on the same instance and run config as the jobs."""
    cfg = f"configs/{env or os.environ.get('LLMOPS_ENV', 'local')}.yaml"
    exe = Path(sys.executable).with_name("dagster")
    cmd = [str(exe) if exe.exists() else "dagster", "asset", "materialize", "-m",
           "pipelines.definitions", "-c", cfg, "--select", select]
    if partition:
        cmd += ["--partition", partition]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)


@app.command()
def demo(env: EnvOpt = None) -> None:
    """The whole loop on the sample inbox: ingest, lifecycle (knowledge base, dataset, base
    model, LoRA challenger), evaluation of both candidates, A/B comparison, gated promotion."""
    from llmops.promotion import last_decision
    from resources.evaluation import configured_candidate_names

    ingest(workers=2, retry_quarantined=False, env=env)
    typer.echo("running the lifecycle job ...", err=True)
    proc = _dagster(["-j", "lifecycle"], env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        _fail("the lifecycle job failed (log above)")
    steps = [(f"evaluation [{c}]", "evaluation", c) for c in configured_candidate_names()]
    steps += [("A/B comparison and promotion", "ab_comparison,promotion", None)]
    for label, select, partition in steps:
        typer.echo(f"running {label} ...", err=True)
        proc = _materialize(select, env, partition)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            _fail(f"{label} failed (log above)")
    mlflow = _resource(env, "mlflow")
    decision = last_decision(mlflow.registered_model)
    if decision is None:
        _fail("the promotion step recorded no decision")
    verdict = "PROMOTED" if decision["outcome"] == "promoted" else decision["outcome"].upper()
    typer.echo(
        f"\nPromotion decision {decision['decision_id']}: {verdict} challenger "
        f"v{decision['challenger_version']} vs champion v{decision['champion_version']}"
    )
    for gate in decision.get("gates", []):
        mark = "pass" if gate["passed"] else "FAIL"
        typer.echo(f"  [{mark}] {gate['name']}: {gate['reason']}")
    typer.echo(
        "\nDone. Look at:\n"
        "  make ui                      Dagster UI at http://127.0.0.1:3000 (assets, lineage)\n"
        "  .venv/bin/llmops models      champion, challenger, previous champion, last decision\n"
        "  .venv/bin/llmops rollback    restore the previous champion\n"
        "  .venv/bin/llmops search 'your question'\n"
        "  make mlflow                  MLflow UI at http://127.0.0.1:5000 (runs, registry)",
    )


# --- serving (issue 10): `llmops serve`, `llmops trace`


def _serve_config(env: str | None) -> Any:
    """ServeConfig from the serving, mlflow, vector_store and embedder resources of one env."""
    from llmops.paths import under_data_root

    serving = _resource(env, "serving")
    mlflow = _resource(env, "mlflow")
    store = _resource(env, "vector_store")
    embedder = _resource(env, "embedder")
    try:  # doc_id -> file name for the citations; the inbox may be remote or empty
        names = {k: f.name for k, f in _resource(env, "docs").inbox_files().items()}
    except Exception:
        names = {}
    return serving, serving.serve_config(
        model_name=mlflow.registered_model, tracking_uri=mlflow.resolved_tracking_uri,
        lancedb_uri=under_data_root(store.uri, "lancedb"), table=store.table,
        embedder_model=embedder.model, doc_names=names,
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: config).")] = None,
    new_key: Annotated[
        str | None,
        typer.Option("--new-key", help="KEY_ID:ROLE: print a fresh API key and its "
                     "LLMOPS_API_KEYS entry (sha256), then exit."),
    ] = None,
    hash_key: Annotated[
        bool, typer.Option("--hash-key", help="Read a key on stdin, print its sha256, exit.")
    ] = False,
    env: EnvOpt = None,
) -> None:
    """OpenAI-compatible RAG endpoint serving the `champion` (keys/JWT from the environment)."""
    from llmops.serving import auth

    if new_key is not None:
        key_id, _, role = new_key.partition(":")
        try:
            key, entry = auth.new_key(key_id, role or "reader")
        except ValueError as err:
            _fail(f"--new-key {new_key!r}: {err}")
        typer.echo(f"key (give it to the client, it is not stored): {key}", err=True)
        typer.echo(entry)
        return
    if hash_key:
        key = sys.stdin.readline().strip()
        if not key:
            _fail("--hash-key: no key on stdin")
        typer.echo(auth.hash_key(key))
        return
    import uvicorn

    from llmops.serving.app import create_app

    serving, cfg = _serve_config(env)
    try:
        application = create_app(cfg)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"serving {cfg.model_name}@{cfg.alias} on {cfg.public_url}, request log "
               f"{cfg.request_log_path}", err=True)
    uvicorn.run(application, host=host or serving.host, port=port or serving.port,
                log_level="info")


@app.command()
def trace(
    request_id: str,
    log: Annotated[Path | None, typer.Option(help="Request log (default: config).")] = None,
    as_json: JsonFlag = False,
    env: EnvOpt = None,
) -> None:
    """Answer -> model version -> MLflow run -> dataset -> LanceDB -> Dagster runs -> pages."""
    import dagster as dg

    from llmops.lineage import format_trace, trace_request
    from llmops.serving.requestlog import find_request
    from resources.serving import dagster_lineage

    path = log or _serve_config(env)[1].request_log_path
    record = find_request(path, request_id)
    if record is None:
        _fail(f"request {request_id!r}: not in the request log {path}")
    _resource(env, "mlflow").activate()

    def runs(chain: dict[str, Any]) -> list[dict[str, Any]]:
        with dg.DagsterInstance.get() as instance:
            return dagster_lineage(instance, chain)

    chain = trace_request(record, runs)
    _emit(chain, as_json, format_trace(chain))


# --- A/B statistics (issue 9): `llmops compare A B`


def _compare_human(report: Any) -> str:
    """Aligned text table of a PairedReport (the markdown version goes to MLflow/Dagster)."""
    def f(v: Any, spec: str = ".4g") -> str:
        return "n/a" if v is None or v != v else format(v, spec)

    head = ("metric", "test", "n", "mean_a", "mean_b", "diff(b-a)", "CI", "p", "p_holm", "sig",
            "effect", "W/T/L")
    rows = [head]
    for c in report.comparisons:
        sig = {"improvement": "yes+", "regression": "yes-"}.get(c.direction, "no")
        rows.append((c.metric, c.test, str(c.n), f(c.mean_a), f(c.mean_b), f(c.diff),
                     f"[{f(c.ci_low)}, {f(c.ci_high)}]", f(c.p_value, ".3g"),
                     f(c.p_adjusted, ".3g"), sig, f(c.effect_size, ".3f"),
                     f"{c.wins}/{c.ties}/{c.losses}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.append(
        f"\n{report.n_paired} pairs by sample_id, alpha {report.alpha} (Holm across metrics); "
        f"unmatched: {len(report.unmatched_a)} only in A, {len(report.unmatched_b)} only in B")
    return "\n".join(lines)


@app.command()
def compare(
    table_a: Annotated[Path, typer.Argument(help="Baseline per-sample scores (CSV or Parquet).")],
    table_b: Annotated[Path, typer.Argument(help="Candidate per-sample scores, same sample_id.")],
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="Metric column (repeatable; default: every shared numeric column).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level, in (0, 1).")
                     ] = 0.05,
    id_column: Annotated[str, typer.Option(help="Column pairing the rows.")] = "sample_id",
    n_boot: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 10_000,
    as_json: JsonFlag = False,
) -> None:
    """Paired A/B statistics on two per-sample score tables (diff = B - A).

    Rows are paired by sample_id (unmatched ids are counted); 0/1 columns get McNemar, scores
    Wilcoxon signed-rank; bootstrap CI of the mean difference; Holm across the metrics.
    """
    from llmops.stats import compare_tables

    if not 0 < alpha < 1:
        raise typer.BadParameter(f"{alpha} is not in (0, 1)", param_hint="--alpha")
    try:
        report = compare_tables(table_a, table_b, metrics=metric or None, alpha=alpha,
                                id_column=id_column, n_boot=n_boot)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    _emit(report.to_dict(), as_json, _compare_human(report))


# --- end A/B statistics


# --- drift: `llmops drift REFERENCE CURRENT`


@app.command()
def drift(
    reference: Annotated[Path, typer.Argument(help="Folder of .txt, or JSONL/Parquet with text.")],
    current: Annotated[Path, typer.Argument(help="The same, for the current window.")],
    as_json: JsonFlag = False,
    no_embeddings: Annotated[
        bool, typer.Option("--no-embeddings", help="Skip the embedding MMD test.")
    ] = False,
) -> None:
    """Two-sample drift tests: embedding MMD (permutation), PSI of length and language mix."""
    from llmops.drift import detect_drift, load_texts

    try:
        ref, cur = load_texts(reference), load_texts(current)
        embed = None
        if not no_embeddings:
            from llmops.embedding import Embedder

            embed = Embedder().encode
        report = detect_drift(ref, cur, embed=embed)
    except ValueError as err:
        _fail(str(err))
    _emit(report.to_dict(), as_json, report.markdown())


def main() -> None:
    app()
