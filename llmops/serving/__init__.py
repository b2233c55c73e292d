"""Serving the champion: an OpenAI-compatible RAG endpoint (FastAPI + uvicorn).

``app.create_app(ServeConfig(...))`` builds the app; ``auth``, ``ratelimit``, ``requestlog`` and
``models`` are its parts, each usable (and tested) on its own. Nothing here imports Dagster.
"""

from llmops.serving.config import ServeConfig

__all__ = ["ServeConfig"]
