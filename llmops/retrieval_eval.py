"""Retrieval evaluation on a labelled question set: hit@k and MRR per search mode.

Labels name the expected chunk by *document name + a phrase it must contain*, never by chunk id:
chunk ids are content hashes that change whenever the chunker's size or overlap changes, while a
(document, phrase) pair survives any re-chunking. Every stored chunk of that document containing
the phrase counts as relevant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmops.vectorstore import SEARCH_MODES

LabelledInput = Iterable["LabelledQuery | Mapping[str, Any]"] | str | Path
DEFAULT_LABELLED = Path(__file__).resolve().parents[1] / "configs" / "retrieval_eval.yaml"


@dataclass(frozen=True)
class LabelledQuery:
    """One question and where its answer lives (document file name + phrase in the chunk)."""

    id: str
    question: str
    doc: str
    phrase: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelledQuery:
        missing = [f for f in ("question", "doc", "phrase") if not data.get(f)]
        if missing:
            raise ValueError(f"labelled query {dict(data)!r} lacks {', '.join(missing)}")
        return cls(
            id=str(data.get("id") or data["question"]),
            question=str(data["question"]),
            doc=str(data["doc"]),
            phrase=str(data["phrase"]),
        )


def normalize_text(text: str) -> str:
    """NFKC, no soft hyphens, collapsed whitespace, case-folded: how phrases are compared."""
    from llmops.text import normalize_text as normalize

    return normalize(text, casefold=True, drop_soft_hyphens=True)


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def doc_matches(doc_id: str, doc_name: str) -> bool:
    """True when ``doc_id`` ("<slug-of-stem>-<content hash>" or the bare slug) is that file's."""
    stem = _slug(Path(doc_name).stem)
    did = _slug(doc_id)
    return bool(stem) and (did == stem or did.startswith(stem + "-"))


def load_labelled(path: str | Path | None = None) -> list[LabelledQuery]:
    """Read a labelled set (YAML with a ``questions`` list); default configs/retrieval_eval.yaml."""
    import yaml

    source = Path(path) if path else DEFAULT_LABELLED
    data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    items = data.get("questions", data) if isinstance(data, dict) else data
    queries = [LabelledQuery.from_dict(item) for item in items]
    ids = [q.id for q in queries]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{source}: duplicate question ids")
    return queries


def _coerce(labelled: LabelledInput) -> list[LabelledQuery]:
    if isinstance(labelled, str | Path):
        return load_labelled(labelled)
    return [q if isinstance(q, LabelledQuery) else LabelledQuery.from_dict(q) for q in labelled]


def relevant_chunk_ids(store: Any, labelled: Sequence[LabelledQuery]) -> dict[str, set[str]]:
    """For each question, the stored chunk ids of its document that contain its phrase."""
    table = store.rows(columns=["chunk_id", "doc_id", "text"])
    if table.num_rows == 0:
        return {q.id: set() for q in labelled}
    chunk_ids = table.column("chunk_id").to_pylist()
    doc_ids = table.column("doc_id").to_pylist()
    texts = table.column("text").to_pylist()
    by_doc: dict[str, list[int]] = {}
    for q in {q.doc for q in labelled}:
        by_doc[q] = [i for i, d in enumerate(doc_ids) if doc_matches(d, q)]
    normalised: dict[int, str] = {}
    out: dict[str, set[str]] = {}
    for q in labelled:
        phrase = normalize_text(q.phrase)
        hits = set()
        for i in by_doc[q.doc]:
            if i not in normalised:
                normalised[i] = normalize_text(texts[i] or "")
            if phrase in normalised[i]:
                hits.add(chunk_ids[i])
        out[q.id] = hits
    return out


def evaluate_retrieval(
    store: Any,
    embedder: Any,
    labelled: LabelledInput,
    k: int = 5,
    modes: Sequence[str] = SEARCH_MODES,
    details: bool = False,
) -> dict[str, dict[str, Any]]:
    """hit@k and MRR@k per search mode over the questions whose expected chunk is stored.

    Questions with no stored chunk containing their phrase (document not ingested, phrase split
    by a chunk boundary) are counted as ``unresolved`` and left out of ``n``, so a missing
    document is visible instead of silently scored as a retrieval miss.
    With ``details`` each mode also lists the rank of the first relevant chunk per question.
    """
    queries = _coerce(labelled)
    relevant = relevant_chunk_ids(store, queries)
    resolved = [q for q in queries if relevant[q.id]]
    unresolved = [q.id for q in queries if not relevant[q.id]]
    vectors = embedder.encode([q.question for q in resolved]) if resolved else []
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        hits = 0
        reciprocal = 0.0
        per_query = []
        for q, vector in zip(resolved, vectors, strict=True):
            found = store.search(q.question, vector, k=k, mode=mode)
            rank = next((h["rank"] for h in found if h["chunk_id"] in relevant[q.id]), None)
            if rank is not None:
                hits += 1
                reciprocal += 1.0 / rank
            per_query.append({"id": q.id, "rank": rank})
        n = len(resolved)
        results[mode] = {
            f"hit@{k}": hits / n if n else 0.0,
            "mrr": reciprocal / n if n else 0.0,
            "n": n,
            "unresolved": len(unresolved),
        }
        if details:
            results[mode]["per_query"] = per_query
            results[mode]["unresolved_ids"] = unresolved
    return results


def _find_document(name: str, folders: Sequence[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / name, *folder.glob(f"*/{name}")):
            if candidate.is_file():
                return candidate
    return None


def corpus_store(
    labelled: LabelledInput,
    embedder: Any,
    uri: str | Path,
    corpus_dir: str | Path | None = None,
    max_tokens: int = 200,
    overlap_tokens: int = 24,
    extract: Callable[[Path, str], list[Any]] | None = None,
) -> Any:
    """A real store over the documents the questions name, built the way the pipeline builds it.

    Documents are looked up in ``corpus_dir`` (default ../shared/corpus, with its sub-folders)
    and examples/inbox, then extracted (``extract(path, name)``, default extract_document with
    the default IngestConfig), chunked (configs/local.yaml sizes), embedded and indexed.
    Returns None when the corpus folder is absent, so callers can skip cleanly.
    """
    from llmops.chunking import chunk_pages
    from llmops.embedding import embed_missing
    from llmops.ingestion import IngestConfig, extract_document
    from llmops.vectorstore import VectorStore

    root = Path(__file__).resolve().parents[1]
    corpus = Path(corpus_dir) if corpus_dir else root.parent / "shared" / "corpus"
    if not corpus.is_dir():
        return None
    folders = [corpus, root / "examples" / "inbox"]
    pages: list[Any] = []
    for name in sorted({q.doc for q in _coerce(labelled)}):
        path = _find_document(name, folders)
        if path is None:
            raise FileNotFoundError(f"labelled document {name!r} not found under {folders}")
        if extract is None:
            pages.extend(extract_document(path.read_bytes(), name, IngestConfig()))
        else:
            pages.extend(extract(path, name))
    chunks = [
        c.to_dict() for c in chunk_pages(pages, embedder.count_tokens, max_tokens, overlap_tokens)
    ]
    rows, _ = embed_missing(chunks, embedder, set())
    store = VectorStore(str(uri))
    store.upsert(rows)
    store.ensure_indexes()
    return store


def format_table(results: Mapping[str, Mapping[str, Any]], k: int = 5) -> str:
    """Markdown table of the metrics (for asset metadata and benchmark output)."""
    from llmops.text import markdown_table

    rows = [["mode", f"hit@{k}", "MRR", "n"]]
    for mode, m in results.items():
        rows.append([mode, f"{m[f'hit@{k}']:.3f}", f"{m['mrr']:.3f}", m["n"]])
    return markdown_table(rows)
