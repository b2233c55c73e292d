"""The serving endpoint, live: uvicorn on a free 127.0.0.1 port, the real MLflow sqlite registry
with two tiny registered versions, a real LanceDB table embedded with the packaged MiniLM.

Covers auth (401/403), validation (400/422 naming the field), sizes (413), rate limit (429 +
Retry-After), non-streaming and SSE answers with citations, `GET /v1/models`, the `openai` and
autogen-ext clients, a champion swap during concurrent requests (admin reload and the poll),
the request log and `llmops trace` on a real request id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops.serving.auth import Authenticator, hash_key, make_token, new_key, parse_entries
from llmops.serving.ratelimit import TokenBucket
from tests.servers import free_port
from tests.training_data import corpus_texts, shared_tiny_base

MODEL = "llmops-serve-test"
READER_KEY = "llm-reader-secret-key"
ADMIN_KEY = "llm-admin-secret-key"
FLOOD_KEY = "llm-flood-secret-key"
JWT_SECRET = "test-jwt-secret-which-is-long-enough-for-hs256"
QUESTION = "What happens to garden watering in stage one of the drought plan?"


def _chunks(embedder: Any) -> list[dict[str, Any]]:
    rows = []
    for d, text in enumerate(corpus_texts()[-4:]):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for i in range(0, len(lines), 3):
            body = " ".join(lines[i : i + 3])
            rows.append({"chunk_id": f"c{d}-{i}", "doc_id": f"doc{d}", "text": body,
                         "page_start": 1 + i // 6, "page_end": 1 + i // 6})
    vectors = embedder.encode([r["text"] for r in rows])
    for row, vec in zip(rows, vectors, strict=True):
        row["vector"] = vec
        row["model_id"] = embedder.model_id
    return rows


class Live:
    def __init__(self, url: str, cfg: Any, store_version: int, log_path: Path) -> None:
        self.url = url
        self.cfg = cfg
        self.store_version = store_version
        self.log_path = log_path

    def client(self, key: str | None = READER_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    import mlflow
    import uvicorn

    from llmops import registry
    from llmops.embedding import Embedder
    from llmops.serving.app import create_app
    from llmops.serving.config import ServeConfig
    from llmops.vectorstore import VectorStore

    base = tmp_path_factory.getbasetemp()
    tmp = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{base / 'mlflow.db'}"  # the session store conftest points MLflow at
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        tiny = shared_tiny_base(base)
        client = mlflow.MlflowClient()
        # two versions of the tiny model: v1 champion, v2 waiting to be promoted
        assert registry.register_base_as_champion(tiny, MODEL, dagster_run_id="run-v1") == "1"
        client.delete_registered_model_alias(MODEL, "champion")
        assert registry.register_base_as_champion(tiny, MODEL, dagster_run_id="run-v2") == "2"
        client.set_registered_model_alias(MODEL, "champion", "1")

        embedder = Embedder()
        store = VectorStore(str(tmp / "lancedb"), table="chunks", dim=embedder.dim)
        store.upsert(_chunks(embedder))
        store.ensure_indexes()

        cfg = ServeConfig(
            model_name=MODEL, lancedb_uri=str(tmp / "lancedb"), k=3, max_new_tokens=16,
            max_prompt_chars=500, max_body_bytes=8000, rate_per_s=2, burst=30,
            poll_interval_s=0.5, price_in_per_1k=0.5, price_out_per_1k=1.5,
            request_log=str(tmp / "requests.jsonl"),
            doc_names={f"doc{d}": f"report-{d}.pdf" for d in range(4)},
        )
        keys = ",".join([f"alice:reader:{hash_key(READER_KEY)}",
                         f"root:admin:{hash_key(ADMIN_KEY)}",
                         f"flood:reader:{hash_key(FLOOD_KEY)}"])
        auth = Authenticator.from_env({"LLMOPS_API_KEYS": keys, "LLMOPS_JWT_SECRET": JWT_SECRET})
        app = create_app(cfg, embedder=embedder, authenticator=auth)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.time() + 60
        while not server.started:
            assert thread.is_alive() and time.time() < deadline, "server did not start"
            time.sleep(0.05)
        yield Live(f"http://127.0.0.1:{port}", cfg, store.version, Path(cfg.request_log))
        server.should_exit = True
        thread.join(timeout=10)


def _ask(c: httpx.Client, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], **extra}
    return c.post("/v1/chat/completions", json=body)


# --------------------------------------------------------------------------- units


def test_keys_parse_hash_and_reject_bad_entries() -> None:
    key, entry = new_key("bob", "admin")
    assert key.startswith("llm-") and entry == f"bob:admin:{hash_key(key)}"
    assert parse_entries(entry + ",\n# comment\n", "env") == {hash_key(key): ("bob", "admin")}
    with pytest.raises(ValueError, match="role 'owner'"):
        parse_entries(f"bob:owner:{hash_key(key)}", "env")
    with pytest.raises(ValueError, match="sha256"):
        parse_entries("bob:reader:abc", "env")
    with pytest.raises(ValueError, match="key_id:role:sha256hex"):
        parse_entries("just-a-key", "env")


def test_token_bucket_refills_at_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2, burst=2, clock=lambda: now[0])
    assert bucket.take("a") == 0 and bucket.take("a") == 0
    assert bucket.take("a") == pytest.approx(0.5)
    assert bucket.take("b") == 0  # per key
    now[0] += 0.5
    assert bucket.take("a") == 0
    assert TokenBucket.retry_after(0.2) == "1"


def test_cli_new_key_and_hash_key() -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    made = CliRunner().invoke(app, ["serve", "--new-key", "bob:admin"])
    assert made.exit_code == 0, made.output
    entry = made.stdout.strip()
    key = made.stderr.split(": ")[-1].strip()
    assert parse_entries(entry, "stdout") == {hash_key(key): ("bob", "admin")}
    hashed = CliRunner().invoke(app, ["serve", "--hash-key"], input=key + "\n")
    assert hashed.exit_code == 0 and hashed.stdout.strip() == hash_key(key)
    bad = CliRunner().invoke(app, ["serve", "--new-key", "bob:owner"])
    assert bad.exit_code == 1 and "owner" in bad.stderr


# --------------------------------------------------------------------------- auth, validation


def test_health_and_models(live: Live) -> None:
    with live.client(None) as anon:
        health = anon.get("/healthz").json()
        assert health["status"] == "ok" and health["model"] == MODEL
        assert anon.get("/v1/models").status_code == 401
    with live.client() as c:
        models = c.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["alias"] == "champion"


def test_auth_errors(live: Live) -> None:
    with live.client(None) as anon:
        r = _ask(anon)
        assert r.status_code == 401 and "Authorization" in r.json()["error"]["message"]
    with live.client("llm-wrong") as wrong:
        assert _ask(wrong).status_code == 401
    bad_sig = make_token("another-secret-of-sufficient-length-xx", "eve", "reader")
    with live.client(bad_sig) as forged:
        assert _ask(forged).status_code == 401
    expired = make_token(JWT_SECRET, "eve", "reader", ttl_s=-10)
    with live.client(expired) as old:
        assert old.get("/v1/models").status_code == 401
    with live.client() as reader:
        r = reader.post("/admin/reload")
        assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    with live.client(make_token(JWT_SECRET, "svc-judge", "reader")) as jwt_reader:
        assert jwt_reader.get("/v1/models").status_code == 200
        assert jwt_reader.post("/admin/reload").status_code == 403
    with live.client(make_token(JWT_SECRET, "ops", "admin")) as jwt_admin:
        assert jwt_admin.post("/admin/reload").status_code == 200


def test_malformed_and_oversize_requests(live: Live) -> None:
    with live.client() as c:
        r = c.post("/v1/chat/completions", content=b"{not json",
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "body"
        r = c.post("/v1/chat/completions", json={"model": MODEL})
        assert r.status_code == 422 and r.json()["error"]["param"] == "messages"
        r = c.post("/v1/chat/completions",
                   json={"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]})
        assert r.status_code == 422 and r.json()["error"]["param"].startswith("messages.0.role")
        r = _ask(c, max_tokens=-1)
        assert r.status_code == 422 and r.json()["error"]["param"] == "max_tokens"
        r = c.post("/v1/chat/completions",
                   json={"model": MODEL, "messages": [{"role": "system", "content": "hi"}]})
        assert r.status_code == 422 and "user message" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions",
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 404 and r.json()["error"]["param"] == "model"
        long_q = {"model": MODEL, "messages": [{"role": "user", "content": "water " * 120}]}
        r = c.post("/v1/chat/completions", json=long_q)
        assert r.status_code == 413 and "max_prompt_chars" in r.json()["error"]["message"]
        huge = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 9000}]}
        r = c.post("/v1/chat/completions", json=huge)
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(live: Live) -> None:
    with live.client(FLOOD_KEY) as c:
        codes = [c.get("/v1/models") for _ in range(60)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, "60 requests never hit a 30-request burst refilled at 2/s"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert "flood" in limited[0].json()["error"]["message"]
    with live.client() as other:  # another key is not affected
        assert other.get("/v1/models").status_code == 200


# --------------------------------------------------------------------------- answers


def test_answer_carries_citations_versions_and_cost(live: Live) -> None:
    with live.client() as c:
        r = _ask(c, max_tokens=8)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert 0 < body["usage"]["completion_tokens"] <= 8
    cites = body["citations"]
    assert len(cites) == 3
    assert all(c["chunk_id"] and c["doc_name"].startswith("report-") and c["page"] >= 1
               for c in cites)
    assert any("watering" in live_text for live_text in _texts(live, cites))
    assert body["model_version"] == r.headers["X-Model-Version"]
    assert body["lancedb_version"] == live.store_version == int(r.headers["X-LanceDB-Version"])
    assert body["request_id"] == body["id"] == r.headers["X-Request-Id"]
    usage = body["usage"]
    expected = usage["prompt_tokens"] / 1000 * 0.5 + usage["completion_tokens"] / 1000 * 1.5
    assert body["cost"] == pytest.approx(expected)


def _texts(live: Live, cites: list[dict[str, Any]]) -> list[str]:
    from llmops.vectorstore import VectorStore

    store = VectorStore(str(live.cfg.lancedb_uri), table="chunks")
    ids = {c["chunk_id"] for c in cites}
    return [r["text"] for r in store.rows(["chunk_id", "text"]).to_pylist() if r["chunk_id"] in ids]


def _sse_events(c: httpx.Client, body: dict[str, Any]) -> tuple[list[Any], httpx.Headers]:
    events: list[Any] = []
    with c.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
        return events, r.headers


def test_streaming_matches_the_non_streamed_answer(live: Live) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}
    with live.client() as c:
        events, headers = _sse_events(c, body)
        plain = _ask(c, max_tokens=12).json()
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(e["object"] == "chat.completion.chunk" for e in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in chunks if e["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    final = [e for e in chunks if e["choices"] and e["choices"][0]["finish_reason"]][-1]
    assert final["citations"] and final["model_version"] == plain["model_version"]
    assert final["request_id"] == headers["X-Request-Id"]
    assert chunks[-1]["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]


def test_openai_client_streaming_and_not(live: Live) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=live.url + "/v1", api_key=READER_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=8)
    assert resp.choices[0].message.content is not None
    assert resp.model_extra["citations"][0]["chunk_id"]
    assert resp.model_extra["model_version"] in {"1", "2"}
    parts, extras = [], []
    for chunk in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=8,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        if chunk.model_extra.get("citations"):
            extras.append(chunk.model_extra)
    assert "".join(parts) == resp.choices[0].message.content
    assert extras and extras[-1]["request_id"].startswith("req-")
    with pytest.raises(Exception) as err:  # the openai client raises on 401 as usual
        OpenAI(base_url=live.url + "/v1", api_key="nope", max_retries=0).models.list()
    assert getattr(err.value, "status_code", None) == 401


def test_autogen_openai_client(live: Live) -> None:
    import asyncio

    from autogen_core.models import ModelFamily, UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def run() -> tuple[Any, list[Any]]:
        client = OpenAIChatCompletionClient(
            model=MODEL, base_url=live.url + "/v1", api_key=READER_KEY,
            model_info={"vision": False, "function_calling": False, "json_output": False,
                        "family": ModelFamily.UNKNOWN, "structured_output": False},
            max_tokens=8,
        )
        try:
            result = await client.create([UserMessage(content=QUESTION, source="user")])
            streamed = [c async for c in client.create_stream(
                [UserMessage(content=QUESTION, source="user")])]
        finally:
            await client.close()
        return result, streamed

    result, streamed = asyncio.run(run())
    assert isinstance(result.content, str) and result.usage.completion_tokens > 0
    assert result.finish_reason in {"stop", "length"}
    final = streamed[-1]
    assert final.content == result.content


# --------------------------------------------------------------------------- hot swap


def test_champion_moves_during_concurrent_requests_without_failures(live: Live) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def worker(i: int) -> None:
        # its own JWT subject, so its own rate bucket; paced to stay inside the burst
        with live.client(make_token(JWT_SECRET, f"worker-{i}", "reader")) as c:
            for _ in range(30):
                if stop.is_set():
                    break
                time.sleep(0.2)
                if i % 2:
                    events, headers = _sse_events(c, {
                        "model": MODEL, "stream": True, "max_tokens": 6,
                        "messages": [{"role": "user", "content": QUESTION}]})
                    ok = events[-1] == "[DONE]" and not any(
                        isinstance(e, dict) and "error" in e for e in events)
                    results.append((200 if ok else 500, headers["X-Model-Version"]))
                else:
                    r = _ask(c, max_tokens=6)
                    results.append((r.status_code, r.headers.get("X-Model-Version", "")))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(worker, i) for i in range(4)]
        time.sleep(1.0)
        client.set_registered_model_alias(MODEL, "champion", "2")
        with live.client(ADMIN_KEY) as admin:
            reload = admin.post("/admin/reload").json()
        assert reload["version"] == "2"
        time.sleep(1.0)
        stop.set()
        for f in futures:
            f.result()
    assert results and all(code == 200 for code, _ in results), results
    with live.client() as c:
        assert _ask(c, max_tokens=4).json()["model_version"] == "2"
    assert {v for _, v in results} <= {"1", "2"}

    # a rollback through the registry alone: the background poll picks it up
    client.set_registered_model_alias(MODEL, "champion", "1")
    deadline = time.time() + 30
    with live.client(None) as anon:
        while anon.get("/healthz").json()["model_version"] != "1":
            assert time.time() < deadline, "the poll never followed the alias back to v1"
            time.sleep(0.2)
    with live.client() as c:
        assert _ask(c, max_tokens=4).json()["model_version"] == "1"


# --------------------------------------------------------------------------- log and trace


def test_request_log_and_trace(live: Live) -> None:
    from typer.testing import CliRunner

    from llmops.serving.requestlog import FIELDS, find_request, read_requests
    from pipelines.cli import app

    with live.client() as c:
        body = _ask(c, max_tokens=6).json()
    rid = body["request_id"]
    rec = find_request(live.log_path, rid)
    assert rec is not None and set(FIELDS) <= set(rec)
    assert rec["key_id"] == "alice" and READER_KEY not in json.dumps(rec)
    assert rec["answer"] == body["choices"][0]["message"]["content"]
    assert rec["citations"] == body["citations"] and rec["status"] == "ok"
    assert rec["cost"] == body["cost"] and rec["latency_s"] > rec["retrieval_s"] > 0
    assert len(list(read_requests(live.log_path))) > 5

    # the deployment asset records what the live endpoint serves, in the Dagster instance
    deployed = _materialize_deployment(live)
    assert deployed["in_sync"] and deployed["model_version"] == body["model_version"]
    assert deployed["lancedb_version"] == live.store_version

    result = CliRunner().invoke(app, ["trace", rid, "--json", "--log", str(live.log_path)])
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)
    assert chain["request"]["request_id"] == rid
    assert chain["model"]["version"] == body["model_version"]
    assert chain["model"]["run"]["run_id"] and chain["model"]["run"]["tags"]["dagster_run_id"] in {
        "run-v1", "run-v2"}
    assert chain["lancedb"]["version"] == live.store_version
    assert {d["doc_name"] for d in chain["documents"]} == {c["doc_name"] for c in body["citations"]}
    assert all(d["pages"] for d in chain["documents"])
    dep = [r for r in chain["dagster_runs"] if r["asset"] == "deployment"]
    assert dep and dep[0]["matched"] and dep[0]["status"] == "SUCCESS"
    human = CliRunner().invoke(app, ["trace", rid, "--log", str(live.log_path)])
    assert human.exit_code == 0 and "-> lancedb" in human.stdout and "-> document" in human.stdout
    missing = CliRunner().invoke(app, ["trace", "req-nope", "--log", str(live.log_path)])
    assert missing.exit_code == 1


def _materialize_deployment(live: Live) -> dict[str, Any]:
    import dagster as dg
    import mlflow

    from assets.deployment import deployment
    from resources.knowledge import VectorStoreResource
    from resources.mlflow import MLflowResource
    from resources.serving import ServingResource

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [deployment], instance=instance,
            resources={
                "mlflow": MLflowResource(tracking_uri=mlflow.get_tracking_uri(),
                                         registered_model=MODEL),
                "vector_store": VectorStoreResource(uri=str(live.cfg.lancedb_uri)),
                "serving": ServingResource(public_url=live.url),
            },
        )
    assert result.success
    meta = result.asset_materializations_for_node("deployment")[0].metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}
