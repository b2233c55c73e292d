"""Retrieval-augmented generation: retrieve chunks, build the training-format prompt, generate.

The public API other stages use (evaluation, serving):

- ``retrieve(store, embedder, question, k, mode)`` -> ``list[Citation]`` from LanceDB.
- ``build_prompt(question, citations)`` -> the prompt in exactly the format the model was
  fine-tuned on (``training.format_example``: instruction = question, context = retrieved text),
  so evaluation measures the model on the input distribution it learned.
- ``LocalGenerator`` (a registered version or a folder, loaded once; batched greedy decoding with
  left padding) and ``EndpointGenerator`` (any OpenAI-compatible endpoint) share
  ``generate(prompts, max_new_tokens, batch_size) -> list[Generation]``. A failed request is a
  ``Generation`` with ``error`` set, never an exception that loses the rest of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_MAX_CONTEXT_CHARS = 2000


@dataclass
class Citation:
    """One retrieved chunk, as shown to the model and returned to the user."""

    chunk_id: str
    doc_id: str
    doc_name: str
    page: int | None
    score: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Generation:
    """One answer. ``latency_s`` is the wall time the request waited (its whole batch, when
    batched); ``error`` is set (and ``text`` empty) when the request failed."""

    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(Protocol):
    name: str
    version: str

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[Generation]: ...


# --------------------------------------------------------------------------- retrieval


def retrieve(
    store: Any,
    embedder: Any,
    question: str,
    k: int = 5,
    mode: str = "hybrid",
    doc_names: Mapping[str, str] | None = None,
) -> list[Citation]:
    """Top-k chunks for ``question`` (``VectorStore.search``); ``doc_names`` maps doc_id to a
    display name (default: the doc_id)."""
    if not question or not question.strip():
        raise ValueError("retrieve: the question is empty")
    vector = embedder.encode([question])[0] if mode in ("vector", "hybrid") else None
    hits = store.search(question, query_vector=vector, k=k, mode=mode)
    return [_citation(h, doc_names or {}) for h in hits]


def retrieve_many(
    store: Any,
    embedder: Any,
    questions: Sequence[str],
    k: int = 5,
    mode: str = "hybrid",
    doc_names: Mapping[str, str] | None = None,
) -> list[list[Citation]]:
    """``retrieve`` for many questions with one batched embedding call (evaluation, batches)."""
    if any(not q or not q.strip() for q in questions):
        raise ValueError("retrieve_many: a question is empty")
    dense = mode in ("vector", "hybrid")
    vectors = embedder.encode(list(questions)) if dense else [None] * len(questions)
    names = doc_names or {}
    return [
        [_citation(h, names) for h in store.search(q, query_vector=v, k=k, mode=mode)]
        for q, v in zip(questions, vectors, strict=True)
    ]


def _citation(hit: Mapping[str, Any], names: Mapping[str, str]) -> Citation:
    return Citation(
        chunk_id=str(hit["chunk_id"]),
        doc_id=str(hit["doc_id"]),
        doc_name=str(names.get(hit["doc_id"]) or hit["doc_id"]),
        page=int(hit["page_start"]) if hit.get("page_start") is not None else None,
        score=float(hit.get("score") or 0.0),
        text=str(hit.get("text") or ""),
    )


class Prompt(str):
    """A prompt string that remembers its instruction and context, so a local model encodes it
    exactly as in training (its chat template when it has one; the context, never the
    instruction, trimmed to the model's window). Endpoints just see the string."""

    instruction: str
    context: str

    def __new__(cls, text: str, instruction: str, context: str) -> Prompt:
        obj = super().__new__(cls, text)
        obj.instruction, obj.context = instruction, context
        return obj


def build_prompt(
    question: str,
    citations: Sequence[Citation],
    max_context_chars: int = DEFAULT_MAX_CONTEXT_CHARS,
) -> Prompt:
    """The fine-tuning prompt (``training.format_example``) with the retrieved texts as context.

    Chunks are joined best-first by blank lines (the training context is plain chunk text, so no
    markers are added) and the context is cut at ``max_context_chars``, dropping the weakest
    chunks first; no context gives the instruction-only form, as in training.
    """
    from llmops.training import format_example

    parts: list[str] = []
    used = 0
    for cit in citations:
        text = cit.text.strip()
        if not text:
            continue
        sep = 2 if parts else 0
        room = max_context_chars - used - sep
        if room <= 0:
            break
        parts.append(text[:room])
        used += sep + len(parts[-1])
    context = "\n\n".join(parts)
    prompt, _ = format_example({"instruction": question, "context": context})
    return Prompt(prompt, question, context)


# --------------------------------------------------------------------------- local models


class LocalGenerator:
    """A causal LM loaded once; batched greedy decoding with left padding.

    Prompts are tokenised as in training (``[bos] + prompt``) and cut from the left to leave
    ``max_new_tokens`` inside the model's context window (the ``### Response:`` heading at the
    end survives). Prompts are sorted by length before batching so a batch carries little
    padding; outputs come back in input order. Greedy decoding with an attention mask gives
    the same tokens batched or one by one (tests/test_rag.py checks it).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str = "local", version: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.version = version
        self.paths: dict[str, Any] = {}
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        cfg = model.config
        self.max_length = int(
            getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 0) or 0
        ) or None
        model.eval()

    @classmethod
    def from_registry(cls, model_name: str, ref: str | int) -> LocalGenerator:
        """A registered MLflow model version by alias (``champion``) or number.

        ``paths`` keeps the downloaded folders (``model``, ``base``) so evaluation can read
        what the weights were trained on (``pretrain_documents.json``, the leakage check).
        """
        from llmops.registry import download_model_version, resolve_version
        from llmops.training import load_tokenizer

        version = resolve_version(model_name, ref)
        paths = download_model_version(model_name, version)
        model = _load_causal_lm(paths["model"], paths["base"])
        gen = cls(model, load_tokenizer(paths["model"]), name=str(ref), version=version)
        gen.paths = paths
        return gen

    @classmethod
    def from_folder(cls, path: str | Path, name: str | None = None) -> LocalGenerator:
        """A Hugging Face folder (full model, or a LoRA adapter whose base path it records)."""
        from llmops.training import load_model

        model, tokenizer = load_model(path)
        return cls(model, tokenizer, name=name or Path(path).name, version=str(path))

    def _encode(self, prompt: str, max_new_tokens: int) -> list[int]:
        """A ``Prompt`` is encoded as in training (context trimmed to fit); a plain string is
        cut from the left, keeping the end where the response heading is."""
        from llmops.training import encode_prompt

        tok = self.tokenizer
        room = None
        if self.max_length:
            room = self.max_length - max_new_tokens
            if room < 8:
                raise ValueError(
                    f"max_new_tokens={max_new_tokens} leaves {room} prompt tokens in the model's "
                    f"{self.max_length}-token window; lower max_new_tokens"
                )
        if isinstance(prompt, Prompt):
            return encode_prompt(tok, prompt.instruction, prompt.context, room)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id, *ids]
        return ids[-room:] if room else ids

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[Generation]:
        import torch

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out: list[Generation | None] = [None] * len(prompts)
        encoded: list[list[int]] = []
        for i, prompt in enumerate(prompts):
            try:
                encoded.append(self._encode(prompt, max_new_tokens))
            except ValueError as exc:  # e.g. an instruction longer than the window: this one fails
                encoded.append([])
                out[i] = Generation("", 0, 0, 0.0, f"prompt {i}: {exc}")
        order = sorted((i for i in range(len(encoded)) if out[i] is None),
                       key=lambda i: len(encoded[i]))
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in idx])
            mask = torch.tensor(
                [[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx]
            )
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    gen = self.model.generate(
                        input_ids=input_ids.to(device),
                        attention_mask=mask.to(device),
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad,
                        eos_token_id=eos,
                    )
            except Exception as exc:  # one bad batch is reported per sample, not raised
                elapsed = time.perf_counter() - t0
                for i in idx:
                    out[i] = Generation("", len(encoded[i]), 0, elapsed,
                                        f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - t0
            for row, i in enumerate(idx):
                new = gen[row, width:].tolist()
                if eos is not None and eos in new:
                    new = new[: new.index(eos) + 1]
                text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
                out[i] = Generation(text, len(encoded[i]), len(new), elapsed)
        return [g for g in out if g is not None]


def _load_causal_lm(model_dir: Path, base_dir: Path | None) -> Any:
    """A full model folder, or a LoRA adapter on its (embedded or recorded) base."""
    import json

    from transformers import AutoModelForCausalLM

    adapter_cfg = Path(model_dir) / "adapter_config.json"
    if adapter_cfg.is_file():
        from peft import PeftModel

        base = base_dir or Path(json.loads(adapter_cfg.read_text())["base_model_name_or_path"])
        return PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(str(base)), str(model_dir)
        )
    return AutoModelForCausalLM.from_pretrained(str(model_dir))


# --------------------------------------------------------------------------- endpoints


class EndpointGenerator:
    """An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, TGI...).

    Each prompt is one user message, temperature 0. The openai client applies ``timeout_s``
    per call and retries with exponential backoff (``max_retries``); token counts come from the
    response's ``usage``. Up to ``batch_size`` requests are in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        name: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        client: Any = None,
    ) -> None:
        if not base_url or not model:
            raise ValueError("EndpointGenerator needs base_url and model")
        self.base_url = base_url
        self.model = model
        self.name = name or model
        self.version = f"{model}@{base_url}"
        if client is None:
            from openai import OpenAI

            client = OpenAI(
                base_url=base_url,
                api_key=api_key or "not-needed",
                timeout=timeout_s,
                max_retries=max_retries,
            )
        self.client = client

    def _one(self, prompt: str, max_new_tokens: int) -> Generation:
        t0 = time.perf_counter()
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_new_tokens,
                temperature=0,
            )
            text = (resp.choices[0].message.content or "").strip()
            usage = getattr(resp, "usage", None)
            return Generation(
                text,
                int(getattr(usage, "prompt_tokens", 0) or 0),
                int(getattr(usage, "completion_tokens", 0) or 0),
                time.perf_counter() - t0,
            )
        except Exception as exc:
            return Generation("", 0, 0, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 64, batch_size: int = 8
    ) -> list[Generation]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(batch_size, len(prompts)))) as pool:
            return list(pool.map(lambda p: self._one(p, max_new_tokens), prompts))
