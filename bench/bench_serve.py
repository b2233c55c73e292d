"""Serving under load: locust (headless) against `llmops.serving` on localhost.

P50/P95 latency and throughput at 1, 4 and 16 concurrent users, retrieval-only (max_tokens=0:
auth, retrieval, prompt, log) and with 32 generated tokens, on a tiny registered champion and a
LanceDB table of corpus chunks. Baseline measured in the same run: the same call in process
(``rag.retrieve`` + ``build_prompt`` + ``LocalGenerator.generate``, no HTTP); the ratio
served / in process at 1 user shows what the HTTP layer costs (aim <= 1.3x); P95 is compared
with the 500 ms budget. Server and locust run as subprocesses (locust monkey-patches with
gevent; the server must not be). ``--quick`` shortens every cell.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "llmops-bench"
KEY = "llm-bench-key"
QUESTION = "What happens to garden watering in stage one of the drought plan?"
BUDGET_MS = 500.0

SERVER = """
import sys, uvicorn
from llmops.serving.app import create_app
from llmops.serving.config import ServeConfig
cfg = ServeConfig(model_name={model!r}, tracking_uri={uri!r}, lancedb_uri={lance!r}, k=4,
                  max_new_tokens=32, rate_per_s=1e6, burst=1000000, poll_interval_s=0,
                  request_log={log!r})
uvicorn.run(create_app(cfg), host="127.0.0.1", port={port}, log_level="warning")
"""

LOCUSTFILE = """
import json, os
from locust import HttpUser, constant, task

BODY = json.loads(os.environ["BENCH_BODY"])
HEADERS = {{"Authorization": "Bearer {key}"}}


class Client(HttpUser):
    wait_time = constant(0)

    @task
    def ask(self):
        with self.client.post("/v1/chat/completions", json=BODY, headers=HEADERS,
                              name="chat", catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("citations"):
                r.failure(f"{{r.status_code}}: {{r.text[:200]}}")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(tmp: Path) -> tuple[str, str, object, object, object]:
    """Tiny base registered as champion, a LanceDB table of corpus chunks."""
    import mlflow

    from llmops import registry
    from llmops.base_model import BaseModelConfig, resolve_base_model
    from llmops.embedding import Embedder
    from llmops.vectorstore import VectorStore
    from tests.training_data import TEST_BASE, corpus_texts

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    texts = corpus_texts()
    info = resolve_base_model(BaseModelConfig(**TEST_BASE), texts=texts, out_root=tmp / "bases")
    registry.register_base_as_champion(info, MODEL)
    embedder = Embedder()
    rows = []
    for d, text in enumerate(texts):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for i in range(0, len(lines), 4):
            rows.append({"chunk_id": f"c{d}-{i}", "doc_id": f"doc{d}",
                         "text": " ".join(lines[i : i + 4]), "page_start": 1 + i // 40})
    for row, vec in zip(rows, embedder.encode([r["text"] for r in rows]), strict=True):
        row["vector"] = vec
    store = VectorStore(str(tmp / "lancedb"), table="chunks", dim=embedder.dim)
    store.upsert(rows)
    store.ensure_indexes()
    return uri, str(tmp / "lancedb"), embedder, store, info


def _in_process(embedder: object, store: object, reps: int, max_new: int) -> list[float]:
    from llmops.rag import LocalGenerator, build_prompt, retrieve

    gen = LocalGenerator.from_registry(MODEL, "champion")
    out = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        cites = retrieve(store, embedder, QUESTION, k=4, mode="hybrid")
        prompt = build_prompt(QUESTION, cites)
        if max_new:
            gen.generate([prompt], max_new_tokens=max_new, batch_size=1)
        if i >= 2:  # warm-up
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def _locust(url: str, users: int, seconds: int, max_tokens: int, tmp: Path) -> dict:
    prefix = tmp / f"run-{users}-{max_tokens}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": max_tokens}
    exe = Path(sys.executable).with_name("locust")
    subprocess.run(
        [str(exe), "-f", str(tmp / "locustfile.py"), "--headless", "-u", str(users),
         "-r", str(users), "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix),
         "--only-summary", "--loglevel", "WARNING"],
        check=False, capture_output=True, text=True, env={**os.environ, "BENCH_BODY":
                                                           json.dumps(body)},
    )
    with open(f"{prefix}_stats.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    return {"n": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "p50": float(row["50%"]), "p95": float(row["95%"]), "rps": float(row["Requests/s"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    seconds, reps = (6, 20) if quick else (20, 60)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        uri, lance, embedder, store, _ = _setup(tmp)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        from llmops.serving.auth import hash_key

        (tmp / "server.py").write_text(SERVER.format(
            model=MODEL, uri=uri, lance=lance, log=str(tmp / "requests.jsonl"), port=port))
        (tmp / "locustfile.py").write_text(LOCUSTFILE.format(key=KEY))
        env = {**os.environ, "LLMOPS_API_KEYS": f"bench:reader:{hash_key(KEY)}",
               "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": uri}
        server = subprocess.Popen([sys.executable, str(tmp / "server.py")], env=env, cwd=ROOT)
        try:
            import httpx

            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit("the server did not come up")
                time.sleep(0.3)
            for max_new in (0, 32, 0, 32):  # warm-up: first queries load indexes and caches
                httpx.post(url + "/v1/chat/completions", timeout=120,
                           headers={"Authorization": f"Bearer {KEY}"},
                           json={"model": MODEL, "max_tokens": max_new,
                                 "messages": [{"role": "user", "content": QUESTION}]})
            print(f"{'mode':<16}{'users':>6}{'req':>7}{'fail':>6}{'p50 ms':>9}{'p95 ms':>9}"
                  f"{'req/s':>8}  vs in-process p50   p95<=500ms")
            for max_new, label in ((0, "retrieval-only"), (32, "32 tokens")):
                # measured right before the served cells of the same mode, so machine-load
                # drift on a shared host hits both sides alike
                base = _in_process(embedder, store, reps, max_new)
                b50, b95 = statistics.median(base), _pct(base, 95)
                print(f"{label + ' in-proc':<16}{1:>6}{len(base):>7}{0:>6}{b50:>9.1f}{b95:>9.1f}"
                      f"{1000 / statistics.mean(base):>8.1f}")
                for users in (1, 4, 16):
                    r = _locust(url, users, seconds, max_new, tmp)
                    ratio = r["p50"] / b50 if b50 else float("nan")
                    print(f"{label:<16}{users:>6}{r['n']:>7}{r['failures']:>6}{r['p50']:>9.1f}"
                          f"{r['p95']:>9.1f}{r['rps']:>8.1f}  {ratio:>6.2f}x"
                          f"{'':>12}{'yes' if r['p95'] <= BUDGET_MS else 'NO'}")
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
