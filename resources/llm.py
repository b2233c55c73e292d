"""An OpenAI-compatible LLM endpoint (OpenAI, vLLM, Ollama, TGI...) and the dataset settings."""

from __future__ import annotations

import dagster as dg


class LLMEndpointResource(dg.ConfigurableResource):
    """Unset ``base_url`` keeps every step offline; set it to enable the AutoGen team."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None  # {env: OPENAI_API_KEY}
    temperature: float = 0.0  # reproducible pairs; part of the dataset generator's cache key
    timeout_s: float = 60.0

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)


class DatasetBuilderResource(dg.ConfigurableResource):
    generator: str = "offline"  # offline | autogen
    split: list[float] = [0.8, 0.1, 0.1]
    seed: int = 13
    min_train_examples: int = 20
    max_examples_per_chunk: int = 4
