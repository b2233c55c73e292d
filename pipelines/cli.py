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


@app.command()
def models(as_json: JsonFlag = False, env: EnvOpt = None) -> None:
    """Registered model versions, their aliases and key metrics."""
    from llmops.registry import list_models

    mlflow = _resource(env, "mlflow")
    mlflow.activate()
    rows = list_models(mlflow.registered_model)
    human = "\n".join(
        f"v{r['version']} {','.join(r['aliases']) or '-'} {r['metrics']} run={r['run_id']}"
        for r in rows
    )
    _emit(rows, as_json, human or f"no version of {mlflow.registered_model} registered yet")


@app.command()
def quarantine(as_json: JsonFlag = False, env: EnvOpt = None) -> None:
    """Documents rejected by ingestion, with the reason."""
    entries = list(_resource(env, "docs").quarantine.latest().values())
    human = "\n".join(f"{e['name']}: [{e['code']}] {e['reason']}" for e in entries)
    _emit(entries, as_json, human or "no document quarantined")


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
        sync = sync_document_partitions(instance, docs)
        done = set(instance.get_materialized_partitions(dg.AssetKey("entities")))
    files = docs.inbox_files()
    rejected = docs.quarantine.latest()
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
            entry = docs.quarantine.latest().get(files[key].sha256)
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


@app.command()
def demo(env: EnvOpt = None) -> None:
    """Ingest the bundled sample inbox and run the lifecycle job on the embedded defaults."""
    ingest(workers=2, retry_quarantined=False, env=env)
    typer.echo("running the lifecycle job ...", err=True)
    proc = _dagster(["-j", "lifecycle"], env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        _fail("the lifecycle job failed (log above)")
    typer.echo(
        "\nDone. Look at:\n"
        "  make ui                      Dagster UI at http://127.0.0.1:3000 (assets, lineage)\n"
        "  .venv/bin/llmops models      registered versions and aliases in MLflow\n"
        "  .venv/bin/llmops search 'your question'\n"
        "  .venv/bin/mlflow ui --backend-store-uri sqlite:///.mlruns/mlflow.db",
    )


def main() -> None:
    app()
