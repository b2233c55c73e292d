"""The FastAPI app: OpenAI-compatible chat completions answered with RAG over LanceDB.

Request path of ``POST /v1/chat/completions``: auth (401/403) -> per-key rate limit (429 +
Retry-After) -> body size (413) -> JSON + schema (400/422 naming the field) -> prompt size
(413) -> one ``Served`` snapshot -> retrieve top-k chunks -> prompt in the fine-tuning format ->
generate (worker thread) -> response with the OpenAI fields plus ``citations``,
``model_version``, ``lancedb_version``, ``request_id`` (and ``X-Request-Id``,
``X-Model-Version``, ``X-LanceDB-Version`` headers) -> one line in the request log.
Only the last user message is the question: the model was fine-tuned on single-turn prompts.
FastAPI is imported at module level (it resolves the handlers' annotations from the module);
nothing on the Dagster import path imports this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from llmops.serving.auth import Authenticator, AuthError, Principal
from llmops.serving.config import ServeConfig
from llmops.serving.models import ModelHolder, Served, stream_local
from llmops.serving.ratelimit import TokenBucket
from llmops.serving.requestlog import RequestLog

log = logging.getLogger(__name__)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The OpenAI fields we use; others (temperature, n, tools...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    stream_options: dict[str, Any] | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers = headers or {}


def _error_body(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class _Resources:
    """What the app serves from; opened in the lifespan (or injected by tests)."""

    def __init__(self, cfg: ServeConfig, holder: ModelHolder | None, store: Any, embedder: Any,
                 open_store: Callable[[], Any] | None) -> None:
        self.cfg = cfg
        self.holder = holder
        self.store = store
        self.embedder = embedder
        self.open_store = open_store
        self.store_lock = threading.Lock()

    def refresh_store(self) -> None:
        """Reopen the table so a rebuilt knowledge base is picked up (new LanceDB version)."""
        if self.open_store is not None:
            store = self.open_store()
            with self.store_lock:
                self.store = store


def default_holder(cfg: ServeConfig) -> ModelHolder:
    """Follow ``cfg.alias`` in the MLflow registry; load in process or point at an endpoint."""
    from llmops.registry import resolve_version

    if cfg.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(cfg.tracking_uri)
        mlflow.set_registry_uri(cfg.tracking_uri)

    def resolve() -> str:
        return resolve_version(cfg.model_name, cfg.alias)

    def load(version: str) -> Any:
        from llmops.rag import EndpointGenerator, LocalGenerator

        if cfg.backend == "endpoint":
            import os

            gen = EndpointGenerator(
                str(cfg.backend_url), cfg.backend_model or cfg.model_name,
                api_key=os.environ.get(cfg.backend_api_key_env),
            )
            gen.version = version
            return gen
        return LocalGenerator.from_registry(cfg.model_name, version)

    return ModelHolder(cfg.model_name, resolve, load, cfg.poll_interval_s)


def default_store_opener(cfg: ServeConfig, dim: int | None) -> Callable[[], Any]:
    from llmops.paths import under_data_root
    from llmops.vectorstore import VectorStore

    uri = under_data_root(cfg.lancedb_uri, "lancedb")
    return lambda: VectorStore(uri, table=cfg.table, dim=dim)


def create_app(
    cfg: ServeConfig,
    holder: ModelHolder | None = None,
    store: Any = None,
    embedder: Any = None,
    authenticator: Authenticator | None = None,
) -> Any:
    """The ASGI app. Without arguments it follows the registry alias and opens LanceDB itself."""
    auth = authenticator or Authenticator.from_env()
    if not auth.configured:
        raise ValueError(
            "no credentials configured: set LLMOPS_API_KEYS (key_id:role:sha256,...), "
            "LLMOPS_API_KEYS_FILE or LLMOPS_JWT_SECRET (see `llmops serve --new-key`)"
        )
    bucket = TokenBucket(cfg.rate_per_s, cfg.burst)
    reqlog = RequestLog(cfg.request_log_path)
    res = _Resources(cfg, holder, store, embedder, None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if res.embedder is None:
            from llmops.embedding import Embedder

            res.embedder = Embedder(cfg.embedder_model)
        if res.store is None:
            res.open_store = default_store_opener(cfg, None)
            res.store = await run_in_threadpool(res.open_store)
        if res.holder is None:
            res.holder = default_holder(cfg)
        if not res.holder.ready:
            await run_in_threadpool(res.holder.start)
        yield
        res.holder.stop()

    app = FastAPI(title="llmops serving", lifespan=lifespan)
    app.state.resources = res
    app.state.request_log = reqlog

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(err.message, err.kind, err.param), err.status,
                            headers=err.headers)

    def principal(request: Request, role: str) -> Principal:
        try:
            who = auth.authenticate(request.headers.get("authorization"))
        except AuthError as err:
            kind = "authentication_error" if err.status == 401 else "permission_error"
            headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
            raise ApiError(err.status, err.message, kind=kind, headers=headers) from err
        if not who.allows(role):
            raise ApiError(403, f"role {who.role!r} may not do this (needs {role!r})",
                           kind="permission_error")
        wait = bucket.take(who.key_id)
        if wait > 0:
            raise ApiError(429, f"rate limit for key {who.key_id!r}: retry in {wait:.2f}s",
                           kind="rate_limit_error",
                           headers={"Retry-After": TokenBucket.retry_after(wait)})
        return who

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        h = res.holder
        if h is None or not h.ready:
            return JSONResponse({"status": "loading"}, 503)
        served = h.current()
        return JSONResponse({
            "status": "ok", "model": served.name, "model_version": served.version,
            "alias": cfg.alias, "loaded_at": served.loaded_at, "swaps": h.swaps,
            "lancedb_table": cfg.table, "lancedb_version": res.store.version,
            "poll_error": h.last_error,
        })

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        principal(request, "reader")
        served = res.holder.current()
        created = int(datetime.fromisoformat(served.loaded_at).timestamp())
        return {"object": "list", "data": [{
            "id": cfg.model_name, "object": "model", "created": created, "owned_by": "llmops",
            "version": served.version, "alias": cfg.alias,
        }]}

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> dict[str, Any]:
        principal(request, "admin")
        try:
            result = await run_in_threadpool(res.holder.reload)
        except Exception as err:
            raise ApiError(502, f"reload failed, still serving the current version: {err}",
                           kind="server_error") from err
        await run_in_threadpool(res.refresh_store)
        return {**result, "lancedb_version": res.store.version}

    async def read_body(request: Request) -> ChatRequest:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_body_bytes:
            raise ApiError(413, f"body of {length} bytes exceeds max_body_bytes="
                           f"{cfg.max_body_bytes}")
        raw = bytearray()
        async for part in request.stream():
            raw += part
            if len(raw) > cfg.max_body_bytes:
                raise ApiError(413, f"body exceeds max_body_bytes={cfg.max_body_bytes}")
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"body: not valid JSON ({err})", param="body") from err
        if not isinstance(payload, dict):
            raise ApiError(400, "body: expected a JSON object", param="body")
        try:
            return ChatRequest.model_validate(payload)
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(422, f"{field}: {first['msg']}", param=field) from err

    def retrieve(question: str) -> tuple[list[Any], int, float]:
        from llmops.rag import retrieve as rag_retrieve

        t0 = time.perf_counter()
        with res.store_lock:
            store = res.store
        version = store.version
        cites = rag_retrieve(store, res.embedder, question, k=cfg.k, mode=cfg.mode,
                             doc_names=cfg.doc_names)
        return cites, version, time.perf_counter() - t0

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        from llmops.rag import build_prompt

        t0 = time.perf_counter()
        arrived = datetime.now(UTC)
        who = principal(request, "reader")
        body = await read_body(request)
        users = [m for m in body.messages if m.role == "user"]
        if not users or not users[-1].text().strip():
            raise ApiError(422, "messages: needs a user message with text content",
                           param="messages")
        question = users[-1].text().strip()
        if len(question) > cfg.max_prompt_chars:
            raise ApiError(413, f"messages: the question has {len(question)} characters, "
                           f"max_prompt_chars={cfg.max_prompt_chars}", param="messages")
        if body.model not in (cfg.model_name, cfg.alias, f"{cfg.model_name}:{cfg.alias}"):
            raise ApiError(404, f"model: {body.model!r} is not served here (try "
                           f"{cfg.model_name!r})", param="model", kind="not_found_error")
        requested = body.max_completion_tokens if body.max_tokens is None else body.max_tokens
        max_new = cfg.max_new_tokens if requested is None else min(requested, cfg.max_new_tokens)
        served = res.holder.current()  # this request's model, whatever swaps meanwhile
        request_id = "req-" + uuid.uuid4().hex
        cites, lance_version, retrieval_s = await run_in_threadpool(retrieve, question)
        prompt = build_prompt(question, cites, cfg.max_context_chars)
        created = int(arrived.timestamp())
        extra = {
            "citations": [
                {k: c.to_dict()[k] for k in ("chunk_id", "doc_id", "doc_name", "page", "score")}
                for c in cites
            ],
            "model_version": served.version, "lancedb_version": lance_version,
            "request_id": request_id,
        }
        headers = {"X-Request-Id": request_id, "X-Model-Version": served.version,
                   "X-LanceDB-Version": str(lance_version)}

        def record(answer: str, tokens_in: int, tokens_out: int, error: str | None,
                   stream: bool) -> float:
            cost = cfg.cost(tokens_in, tokens_out)
            reqlog.append({
                "request_id": request_id, "time": arrived.isoformat(), "key_id": who.key_id,
                "role": who.role, "model": cfg.model_name, "model_version": served.version,
                "alias": cfg.alias, "lancedb_table": cfg.table, "lancedb_version": lance_version,
                "prompt": question, "answer": answer, "citations": extra["citations"],
                "latency_s": round(time.perf_counter() - t0, 6),
                "retrieval_s": round(retrieval_s, 6), "tokens_in": tokens_in,
                "tokens_out": tokens_out, "cost": cost, "stream": stream,
                "status": "error" if error else "ok", "error": error,
            })
            return cost

        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _sse(served, prompt, max_new, request_id, created, cfg.model_name, extra,
                     include_usage, record),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )

        gen = await run_in_threadpool(_generate, served, prompt, max_new)
        cost = record(gen.text, gen.tokens_in, gen.tokens_out, gen.error, False)
        if gen.error:
            raise ApiError(500, f"generation failed: {gen.error}", kind="server_error",
                           headers=headers)
        finish = "length" if max_new and gen.tokens_out >= max_new else "stop"
        return JSONResponse({
            "id": request_id, "object": "chat.completion", "created": created,
            "model": cfg.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": gen.tokens_in, "completion_tokens": gen.tokens_out,
                      "total_tokens": gen.tokens_in + gen.tokens_out},
            "cost": cost, **extra,
        }, headers=headers)

    return app


def _generate(served: Served, prompt: str, max_new: int) -> Any:
    from llmops.rag import Generation

    if max_new == 0:  # retrieval only: citations, no generated text
        return Generation("", 0, 0, 0.0)
    with served.lock:
        return served.generator.generate([prompt], max_new_tokens=max_new, batch_size=1)[0]


def _chunk(rid: str, created: int, model: str, delta: dict[str, Any],
           finish: str | None, **extra: Any) -> str:
    body = {"id": rid, "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(served: Served, prompt: str, max_new: int, request_id: str, created: int,
               model: str, extra: dict[str, Any], include_usage: bool,
               record: Callable[..., float]) -> AsyncIterator[str]:
    """SSE chunks as OpenAI sends them; generation runs in a thread feeding an asyncio queue."""
    yield _chunk(request_id, created, model, {"role": "assistant", "content": ""}, None, **extra)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    done = object()

    def produce() -> None:
        try:
            if max_new == 0:
                loop.call_soon_threadsafe(queue.put_nowait, {"tokens_in": 0, "tokens_out": 0})
            elif hasattr(served.generator, "_encode") and hasattr(served.generator, "model"):
                with served.lock:
                    for item in stream_local(served.generator, prompt, max_new):
                        loop.call_soon_threadsafe(queue.put_nowait, item)
            else:  # an endpoint backend: one piece
                gen = _generate(served, prompt, max_new)
                if gen.text:
                    loop.call_soon_threadsafe(queue.put_nowait, gen.text)
                loop.call_soon_threadsafe(queue.put_nowait, {
                    "tokens_in": gen.tokens_in, "tokens_out": gen.tokens_out, "error": gen.error})
        except Exception as err:
            loop.call_soon_threadsafe(queue.put_nowait, {
                "tokens_in": 0, "tokens_out": 0, "error": f"{type(err).__name__}: {err}"})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=produce, daemon=True, name=f"gen-{request_id[:12]}").start()
    pieces: list[str] = []
    stats: dict[str, Any] = {"tokens_in": 0, "tokens_out": 0, "error": None}
    while True:
        item = await queue.get()
        if item is done:
            break
        if isinstance(item, dict):
            stats.update(item)
            continue
        pieces.append(item)
        yield _chunk(request_id, created, model, {"content": item}, None)
    answer = "".join(pieces).strip()
    cost = record(answer, stats["tokens_in"], stats["tokens_out"], stats.get("error"), True)
    if stats.get("error"):
        err = _error_body(f"generation failed: {stats['error']}", "server_error")
        yield f"data: {json.dumps(err)}\n\n"
    else:
        finish = "length" if max_new and stats["tokens_out"] >= max_new else "stop"
        yield _chunk(request_id, created, model, {}, finish, **extra, cost=cost)
        if include_usage:
            usage = {"prompt_tokens": stats["tokens_in"], "completion_tokens": stats["tokens_out"],
                     "total_tokens": stats["tokens_in"] + stats["tokens_out"]}
            body = {"id": request_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage}
            yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
