"""Loads configs/<env>.yaml (Dagster run-config format) and builds the resources from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def config_path(env: str | None = None) -> Path:
    env = env or os.environ.get("LLMOPS_ENV", "local")
    path = CONFIG_DIR / f"{env}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"LLMOPS_ENV={env}: no {path} (known environments: {known})")
    return path


def _env_vars(value: Any) -> Any:
    """`{env: NAME}` (Dagster's own run-config syntax) becomes dg.EnvVar, read at run time."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return dg.EnvVar(value["env"])
        return {k: _env_vars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_vars(v) for v in value]
    return value


def resource_config(env: str | None = None) -> dict[str, dict[str, Any]]:
    raw = yaml.safe_load(config_path(env).read_text()) or {}
    return {
        name: _env_vars((spec or {}).get("config") or {})
        for name, spec in (raw.get("resources") or {}).items()
    }
