"""Everything the server needs, in one plain dataclass (the CLI fills it from configs/*.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops.paths import data_root


def default_request_log() -> Path:
    """``$LLMOPS_DATA_DIR/serving/requests.jsonl``: the drift sensor and nightly eval read it."""
    return data_root() / "serving" / "requests.jsonl"


@dataclass
class ServeConfig:
    """Server settings. Secrets are not here: keys and the JWT secret come from the environment.

    ``backend="local"`` loads the registered version in process (CPU, tiny models, tests);
    ``backend="endpoint"`` keeps RAG, auth, logging and the alias here but sends generation to
    an OpenAI-compatible server at ``backend_url`` (e.g. vLLM on a GPU host).
    """

    model_name: str = "llmops-assistant"
    alias: str = "champion"
    tracking_uri: str | None = None
    lancedb_uri: str | None = None  # default: $LLMOPS_DATA_DIR/lancedb
    table: str = "chunks"
    embedder_model: str | None = None  # None = the packaged MiniLM
    k: int = 4
    mode: str = "hybrid"
    max_context_chars: int = 2000
    max_new_tokens: int = 64  # default and upper bound for max_tokens
    max_prompt_chars: int = 4000
    max_body_bytes: int = 64_000
    rate_per_s: float = 5.0
    burst: int = 20
    poll_interval_s: float = 30.0  # 0 disables the background alias poll
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    request_log: str | None = None  # default: default_request_log()
    backend: str = "local"  # local | endpoint
    backend_url: str | None = None
    backend_model: str | None = None
    backend_api_key_env: str = "LLMOPS_BACKEND_API_KEY"
    public_url: str | None = None  # where clients reach this server (deployment record)
    doc_names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("vector", "fts", "hybrid"):
            raise ValueError(f"ServeConfig.mode: expected vector, fts or hybrid, got {self.mode!r}")
        if self.backend not in ("local", "endpoint"):
            raise ValueError(
                f"ServeConfig.backend: expected local or endpoint, got {self.backend!r}"
            )
        if self.backend == "endpoint" and not self.backend_url:
            raise ValueError("ServeConfig.backend_url is required when backend='endpoint'")
        for name in ("k", "max_new_tokens", "max_prompt_chars", "max_body_bytes", "burst"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.rate_per_s <= 0:
            raise ValueError(f"ServeConfig.rate_per_s must be > 0, got {self.rate_per_s}")

    @property
    def request_log_path(self) -> Path:
        return Path(self.request_log) if self.request_log else default_request_log()

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """Token cost from the configured prices (per 1000 tokens)."""
        return round(
            tokens_in / 1000 * self.price_in_per_1k + tokens_out / 1000 * self.price_out_per_1k, 8
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
