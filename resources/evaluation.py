"""Evaluation settings: candidates (registered versions or external endpoints), judges, targets.

A candidate is either a registered model version of the project's model (``ref`` = an alias
such as ``champion`` or a version number) or an external OpenAI-compatible endpoint
(``base_url`` + ``model``), so two providers can be A/B-tested on the same test set. The
candidate names are the partitions of the ``evaluation`` asset, fixed when the code location
loads (a Dagster static partitions definition), so they come from this resource's YAML config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from llmops.evaluation import EvalConfig


class CandidateConfig(dg.Config):
    """One candidate: ``ref`` (registered model) or ``base_url`` + ``model`` (endpoint)."""

    name: str
    ref: str | None = None  # alias or version number of the registered model
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    timeout_s: float = 30.0
    max_retries: int = 2

    @property
    def is_endpoint(self) -> bool:
        return bool(self.base_url)


class JudgeEndpointConfig(dg.Config):
    """An OpenAI-compatible judge; several form an ordered fallback chain."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 2


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CANDIDATES = [CandidateConfig(name="champion", ref="champion"),
                      CandidateConfig(name="challenger", ref="challenger")]


class EvaluationResource(dg.ConfigurableResource):
    """How candidates are evaluated and what they cost; all offline unless endpoints are set."""

    top_k: int = 5
    search_mode: str = "hybrid"  # vector | fts | hybrid
    max_new_tokens: int = 48
    batch_size: int = 8
    max_context_chars: int = 2000
    max_samples: int | None = None  # None: the whole test split
    latency_probe: int = 16  # samples also answered one at a time for per-request P50/P95
    price_in_per_1k: float = 0.0  # currency per 1,000 prompt tokens
    price_out_per_1k: float = 0.0  # currency per 1,000 generated tokens
    candidates: list[CandidateConfig] = Field(default_factory=lambda: list(DEFAULT_CANDIDATES))
    judges: list[JudgeEndpointConfig] = Field(default_factory=list)
    # Business targets shown beside the aggregates.
    target_context_relevancy: float = 0.90
    target_p95_latency_ms: float = 500.0
    target_max_harmful: int = 0
    # evaluation_sane check: what counts as enough evidence to compare at all.
    min_scored_samples: int = 5
    max_failure_rate: float = 0.1
    safety: bool = True
    # ab_comparison: which two candidate partitions are paired, and the significance level.
    ab_baseline: str = "champion"
    ab_candidate: str = "challenger"
    ab_alpha: float = 0.05

    def eval_config(self) -> EvalConfig:
        from llmops.evaluation import EvalConfig

        return EvalConfig(
            top_k=self.top_k,
            search_mode=self.search_mode,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            max_context_chars=self.max_context_chars,
            price_in_per_1k=self.price_in_per_1k,
            price_out_per_1k=self.price_out_per_1k,
            max_samples=self.max_samples,
            latency_probe=self.latency_probe,
        )

    def targets(self) -> dict[str, tuple[str, float]]:
        return {
            "context_relevancy": (">=", self.target_context_relevancy),
            "latency_p95_ms": ("<", self.target_p95_latency_ms),
            "safety_harmful": ("<=", float(self.target_max_harmful)),
        }

    def candidate(self, name: str) -> CandidateConfig:
        for cand in self.candidates:
            if cand.name == name:
                return cand
        raise dg.Failure(
            f"evaluation: no candidate named {name!r}; configured: "
            f"{[c.name for c in self.candidates]}"
        )

    def endpoint_generator(self, cand: CandidateConfig | JudgeEndpointConfig) -> Any:
        from llmops.rag import EndpointGenerator

        key = os.environ.get(cand.api_key_env) if cand.api_key_env else None
        if cand.api_key_env and not key:
            raise dg.Failure(f"{cand.name}: environment variable {cand.api_key_env} is not set")
        return EndpointGenerator(
            str(cand.base_url), str(cand.model), api_key=key, name=cand.name,
            timeout_s=cand.timeout_s, max_retries=cand.max_retries,
        )

    def judge_generator(self) -> Any:
        """The first configured judge endpoint, or None (offline metrics only)."""
        return self.endpoint_generator(self.judges[0]) if self.judges else None


def candidate_names(config: dict[str, Any] | None) -> list[str]:
    """Candidate names from the resource's config dict (defaults: champion, challenger)."""
    cands = (config or {}).get("candidates") or [c.model_dump() for c in DEFAULT_CANDIDATES]
    names = [str(c["name"]) for c in cands]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluation.candidates: duplicate names in {names}")
    return names


def configured_candidate_names(env: str | None = None) -> list[str]:
    """The partition keys of ``evaluation``: candidate names in ``configs/<LLMOPS_ENV>.yaml``.

    Read here (not through pipelines.settings) because assets may not import pipelines, and the
    partitions must be known when the code location loads.
    """
    import yaml

    path = CONFIG_DIR / f"{env or os.environ.get('LLMOPS_ENV', 'local')}.yaml"
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    spec = ((raw or {}).get("resources") or {}).get("evaluation") or {}
    return candidate_names(spec.get("config") or {})
