"""Shared fixtures: offline, telemetry-free environment and the shared real-world corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any heavy library is imported by a test module.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("LLMOPS_SHARED_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """../shared/corpus (real documents nobody here wrote); skip when absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def extracted():
    """``extract(path, name=None)``: extract_document with the default IngestConfig, once per
    file per session (three modules read the same corpus PDFs; figure OCR alone is minutes).
    Each call returns a deep copy, so a test that edits its pages cannot leak into another.
    A DocumentError is cached and raised again."""
    import copy

    from llmops.ingestion import DocumentError, IngestConfig, extract_document

    cache: dict[tuple[str, str], object] = {}

    def extract(path: Path, name: str | None = None):
        key = (str(path), name or path.name)
        if key not in cache:
            try:
                cache[key] = extract_document(path.read_bytes(), key[1], IngestConfig())
            except DocumentError as err:
                cache[key] = err
        if isinstance(cache[key], DocumentError):
            raise cache[key]
        return copy.deepcopy(cache[key])

    return extract


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path_factory, monkeypatch):
    """Tests never touch the user's Dagster home, MLflow store or LanceDB folder."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("DAGSTER_HOME", str(base / "dagster_home"))
    (base / "dagster_home").mkdir(exist_ok=True)
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{base / 'mlflow.db'}")
