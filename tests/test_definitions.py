"""The code location loads fast, is complete, and is configured from YAML only."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT

HEAVY = [
    "torch",
    "transformers",
    "peft",
    "datasets",
    "mlflow",
    "lancedb",
    "ragas",
    "great_expectations",
    "autogen_agentchat",
    "autogen_core",
    "sentence_transformers",
]


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import sys, json; import pipelines.definitions as d; d.defs.resolve_all_job_defs(); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_definitions_validate_with_the_dagster_cli(tmp_path):
    exe = REPO_ROOT / ".venv" / "bin" / "dagster"
    cmd = [str(exe) if exe.exists() else "dagster", "definitions", "validate"]
    proc = subprocess.run(
        [*cmd, "-m", "pipelines.definitions"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_asset_graph_jobs_and_sensors():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw_documents",
        "extracted_pages",
        "chunks",
        "entities",
        "chunk_embeddings",
        "instruction_dataset",
        "base_model",
        "finetuned_model",
    } <= keys
    ingest = defs.resolve_job_def("ingest_documents")
    assert ingest.partitions_def is not None
    lifecycle = defs.resolve_job_def("lifecycle")
    assert lifecycle.partitions_def is None
    assert defs.resolve_sensor_def("inbox_sensor")
    # Lineage: the fine-tuned model traces back to the raw documents.
    upstream = dg.AssetSelection.assets("finetuned_model").upstream().resolve(graph)
    assert dg.AssetKey("raw_documents") in upstream


def test_training_assets_share_one_pool():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    pools = {
        k.to_user_string(): graph.get(k).pools
        for k in (dg.AssetKey("base_model"), dg.AssetKey("finetuned_model"))
    }
    assert all(p == {"training"} for p in pools.values()), pools


def test_resources_come_from_the_env_config(monkeypatch, tmp_path):
    from pipelines import settings
    from pipelines.definitions import build_resources

    (tmp_path / "ci.yaml").write_text(
        "resources:\n"
        "  mlflow:\n    config: {experiment: from-yaml}\n"
        "  llm:\n    config: {base_url: http://llm.local/v1, model: m, api_key: {env: MY_KEY}}\n"
    )
    monkeypatch.setattr(settings, "CONFIG_DIR", tmp_path)
    res = build_resources("ci")
    assert res["mlflow"].experiment == "from-yaml"
    # Secrets stay environment variables, resolved only at run time.
    assert isinstance(res["llm"].api_key, dg.EnvVar)
    with pytest.raises(FileNotFoundError, match="known environments: ci"):
        build_resources("nope")
    (tmp_path / "bad.yaml").write_text("resources:\n  not_a_resource: {config: {}}\n")
    with pytest.raises(ValueError, match="unknown resources"):
        build_resources("bad")


@pytest.mark.parametrize("env", ["local", "ci", "gpu", "production"])
def test_every_shipped_config_is_valid_run_config_for_the_lifecycle_job(env, monkeypatch):
    import re

    import yaml

    from pipelines.definitions import defs

    text = (REPO_ROOT / "configs" / f"{env}.yaml").read_text()
    for var in re.findall(r"\{env: (\w+)\}", text):  # secrets and locations of that environment
        monkeypatch.setenv(var, f"value-of-{var}")
    run_config = yaml.safe_load(text)
    job = defs.resolve_job_def("lifecycle")
    result = dg.validate_run_config(job, run_config)
    assert result


def _imported_modules(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("llmops", ("dagster", "assets", "resources", "sensors", "pipelines")),
        ("resources", ("assets", "sensors", "pipelines")),
        ("assets", ("sensors", "pipelines")),
    ],
)
def test_layers_only_import_inwards(layer, forbidden):
    """The onion of docs/architecture.md: the domain knows no Dagster, assets know no jobs."""
    offenders = {
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in (REPO_ROOT / layer).rglob("*.py")
        for module in _imported_modules(path)
        if module.split(".")[0] in forbidden
    }
    assert not offenders, sorted(offenders)
