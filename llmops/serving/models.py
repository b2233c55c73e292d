"""The served model: follows a registry alias and swaps versions without a restart.

A request takes one ``Served`` snapshot when it starts and uses it to the end, so a swap never
changes the model under an in-flight request (the old generator lives until its last request
drops it). A new version is resolved and loaded off the request path (the poll thread, or the
admin reload in a worker thread) and published with one reference assignment under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One loaded version. ``lock`` serialises generation on it (one CPU model, many threads)."""

    name: str
    version: str
    generator: Any
    loaded_at: str
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


class ModelHolder:
    """``resolve()`` -> the version the alias points at; ``load(version)`` -> a generator."""

    def __init__(
        self,
        name: str,
        resolve: Callable[[], str],
        load: Callable[[str], Any],
        poll_interval_s: float = 30.0,
        on_swap: Callable[[Served, Served | None], None] | None = None,
    ) -> None:
        self.name = name
        self._resolve = resolve
        self._load = load
        self.poll_interval_s = poll_interval_s
        self._on_swap = on_swap
        self._served: Served | None = None
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time (poll vs admin reload)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.swaps = 0

    def current(self) -> Served:
        served = self._served
        if served is None:
            raise RuntimeError(f"no version of {self.name!r} is loaded yet")
        return served

    @property
    def ready(self) -> bool:
        return self._served is not None

    def reload(self) -> dict[str, Any]:
        """Resolve the alias; load and swap in a new version when it moved. Blocking."""
        with self._load_lock:
            previous = self._served.version if self._served else None
            version = str(self._resolve())
            if version == previous:
                return {"changed": False, "previous": previous, "version": version}
            t0 = time.perf_counter()
            generator = self._load(version)
            served = Served(self.name, version, generator,
                            datetime.now(UTC).isoformat(), round(time.perf_counter() - t0, 3))
            with self._swap_lock:
                old, self._served = self._served, served
                self.swaps += 1
            log.info("serving %s v%s (was v%s), loaded in %.2fs",
                     self.name, version, previous, served.load_s)
            if self._on_swap is not None:
                self._on_swap(served, old)
            return {"changed": True, "previous": previous, "version": version,
                    "load_s": served.load_s}

    def start(self) -> None:
        """First load (blocking: a server without a model is not ready), then the poll thread."""
        self.reload()
        if self.poll_interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="champion-poll", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.reload()
                self.last_error = None
            except Exception as err:  # keep serving the current version; report on /healthz
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("champion poll failed, still serving the current version: %s", err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def stream_local(generator: Any, prompt: str, max_new_tokens: int) -> Iterator[str | dict]:
    """Yield text pieces as a ``LocalGenerator``'s model produces them, then a stats dict.

    Same prompt encoding and greedy decoding as ``LocalGenerator.generate`` (one prompt, no
    padding), so the streamed text equals the non-streamed one.
    """
    import torch
    from transformers import TextIteratorStreamer

    tok = generator.tokenizer
    ids = generator._encode(prompt, max_new_tokens)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with torch.no_grad():
                out = generator.model.generate(
                    input_ids=torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=max_new_tokens, do_sample=False,
                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                    streamer=streamer,
                )
            new = out[0, len(ids):].tolist()
            if tok.eos_token_id is not None and tok.eos_token_id in new:
                new = new[: new.index(tok.eos_token_id) + 1]
            result["tokens_out"] = len(new)
        except Exception as err:  # surfaced to the caller after the stream ends
            result["error"] = f"{type(err).__name__}: {err}"
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # the non-streamed answer is stripped: drop leading whitespace, hold trailing whitespace
    # back until more text follows, so the concatenated stream is the same string
    started, pending = False, ""
    for piece in streamer:
        if not started:
            piece = piece.lstrip()
            if not piece:
                continue
            started = True
        text = pending + piece
        body = text.rstrip()
        pending = text[len(body):]
        if body:
            yield body
    thread.join()
    yield {"tokens_in": len(ids), "tokens_out": result.get("tokens_out", 0),
           "error": result.get("error")}
