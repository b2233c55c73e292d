"""The Dagster UI, proven on a real `dagster-webserver` over the instance of a CI lifecycle run.

The instance is the one tests/test_ci_lifecycle.py checks (tests/lifecycle_instance.py builds it
once per session: ingest, lifecycle job, evaluation per candidate, A/B, promotion). The
webserver is asked over its GraphQL API for the asset graph and the materializations, and a
headless Chromium (Debian's package, `make chromium`, driven by Playwright) takes screenshots of
the global asset lineage page and of the promotion asset's page. The screenshots are kept in
`test-artifacts/ui/` (or $LLMOPS_TEST_ARTIFACTS), printed at the end of the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests import servers
from tests.conftest import REPO_ROOT
from tests.lifecycle_instance import LifecycleInstance, built, venv_bin

pytestmark = [pytest.mark.slow, pytest.mark.ui]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LLMOPS_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "ui"
# The lineage DESIGN.md draws, as the UI must show it (upstream -> downstream).
DESIGNED_EDGES = {
    ("raw_documents", "extracted_pages"),
    ("extracted_pages", "chunks"),
    ("chunks", "entities"),
    ("entities", "chunk_embeddings"),
    ("chunk_embeddings", "instruction_dataset"),
    ("instruction_dataset", "finetuned_model"),
    ("base_model", "finetuned_model"),
    ("finetuned_model", "evaluation"),
    ("evaluation", "ab_comparison"),
    ("ab_comparison", "promotion"),
    ("finetuned_model", "deployment"),
}


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> LifecycleInstance:
    return built(tmp_path_factory.getbasetemp() / "ci-lifecycle")


@pytest.fixture(scope="module")
def webserver(ci_run: LifecycleInstance) -> Iterator[str]:
    """`dagster-webserver -m pipelines.definitions` on the CI run's DAGSTER_HOME."""
    port = servers.free_port()
    log = (ci_run.root / f"webserver-{port}.log").open("w")
    server = subprocess.Popen(
        [venv_bin("dagster-webserver"), "-m", "pipelines.definitions", "-h", "127.0.0.1",
         "-p", str(port)],
        cwd=REPO_ROOT, env=ci_run.env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            info = json.loads(servers.wait_http(f"{base}/server_info", server, timeout=240))
        except (RuntimeError, TimeoutError) as exc:
            log.flush()
            pytest.fail(f"dagster-webserver did not start on {base} ({exc}):\n"
                        f"{Path(log.name).read_text()[-3000:]}")
        assert info["dagster_webserver_version"] == dg.__version__
        yield base
    finally:
        servers.stop(server)
        log.close()


def _graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
    payload = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert not payload.get("errors"), payload["errors"]
    return payload["data"]


ASSET_GRAPH = """
{ assetNodes { assetKey { path } groupName isPartitioned
               dependencyKeys { path } dependedByKeys { path } } }"""

MATERIALIZATIONS = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 20) {
        runId partition timestamp
        metadataEntries { label ... on TextMetadataEntry { text }
                                ... on MarkdownMetadataEntry { mdStr } }
      }
    }
  }
}"""


@pytest.fixture(scope="module")
def asset_nodes(webserver: str) -> list[dict[str, Any]]:
    return _graphql(webserver, ASSET_GRAPH)["assetNodes"]


def _name(key: dict[str, Any]) -> str:
    return "/".join(key["path"])


def test_graphql_asset_graph_is_the_designed_lineage(asset_nodes) -> None:
    from pipelines.definitions import defs

    edges = {(_name(dep), _name(n["assetKey"])) for n in asset_nodes
             for dep in n["dependencyKeys"]}
    assert edges >= DESIGNED_EDGES, f"missing in the UI: {sorted(DESIGNED_EDGES - edges)}"
    # Both directions agree, and the UI shows exactly what the code location defines.
    reverse = {(_name(n["assetKey"]), _name(down)) for n in asset_nodes
               for down in n["dependedByKeys"]}
    assert reverse == edges
    graph = defs.resolve_asset_graph()
    defined = {(p.to_user_string(), k.to_user_string()) for k in graph.get_all_asset_keys()
               for p in graph.get(k).parent_keys}
    assert edges == defined
    groups = {_name(n["assetKey"]): n["groupName"] for n in asset_nodes}
    assert groups["promotion"] == groups["ab_comparison"] == groups["evaluation"] == "evaluation"
    partitioned = {_name(n["assetKey"]) for n in asset_nodes if n["isPartitioned"]}
    assert {"raw_documents", "chunks", "evaluation"} <= partitioned


def test_graphql_shows_every_materialization_of_the_ci_run(
    webserver, asset_nodes, ci_run, monkeypatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(ci_run.dagster_home))
    with dg.DagsterInstance.get() as instance:
        for node in asset_nodes:
            name = _name(node["assetKey"])
            asset = _graphql(webserver, MATERIALIZATIONS, {"path": node["assetKey"]["path"]})
            mats = asset["assetOrError"].get("assetMaterializations") or []
            assert mats, f"{name}: no materialization visible in the UI"
            key = dg.AssetKey(node["assetKey"]["path"])
            if node["isPartitioned"]:
                shown = {m["partition"] for m in mats}
                assert shown == instance.get_materialized_partitions(key), name
            else:
                latest = instance.get_latest_materialization_event(key)
                assert mats[0]["runId"] == latest.run_id, name

        promotion = _graphql(webserver, MATERIALIZATIONS, {"path": ["promotion"]})
        entries = {e["label"]: e for e in
                   promotion["assetOrError"]["assetMaterializations"][0]["metadataEntries"]}
        event = instance.get_latest_materialization_event(dg.AssetKey("promotion"))
        recorded = event.asset_materialization.metadata
    assert entries["decision_id"]["text"] == recorded["decision_id"].value
    assert entries["outcome"]["text"] in {"promoted", "rejected"}
    assert entries["gates"]["mdStr"].startswith("| gate |")


def _dismiss_community_dialog(page: Any) -> bool:
    """Dagster's one-time "Join the Dagster community" dialog (per instance): Skip it."""
    skip = page.get_by_role("dialog").get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5000)
    except Exception:  # already dismissed on this instance: nothing shows
        return False
    skip.click()
    page.get_by_role("dialog").wait_for(state="detached", timeout=10000)
    return True


def _expand_all_groups(page: Any, graph: Any) -> None:
    """Several groups start collapsed: "Expand all groups" from the graph's context menu
    (right click on the background), or its shortcut ⌥E when the menu does not open."""
    box = graph.locator("xpath=..").bounding_box()  # the graph's whole panel
    page.mouse.click(box["x"] + 40, box["y"] + box["height"] - 40, button="right")
    item = page.get_by_role("menuitem").filter(has_text="Expand all groups")
    try:
        item.wait_for(state="visible", timeout=5000)
        item.click()
    except Exception:  # no menu at that point: the keyboard shortcut does the same
        page.keyboard.press("Escape")
        page.keyboard.press("Alt+e")


def _shown(name: str, text: str) -> bool:
    """The graph shortens long names in the middle (`instructi…_dataset`)."""
    if name in text:
        return True
    return any(f"{name[:i]}…{name[j:]}" in text
               for i in range(3, len(name)) for j in range(i + 1, len(name) - 2))


def _check_png(path: Path, width: int, height: int) -> int:
    """A real rendering, not a blank or error page: full size, many colours, varied pixels."""
    from PIL import Image, ImageStat

    assert path.stat().st_size > 20_000, f"{path}: only {path.stat().st_size} bytes"
    with Image.open(path) as img:
        assert img.size == (width, height)
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24)
        assert len(colours) >= 200, f"{path}: only {len(colours)} distinct colours"
        background = max(colours)[0] / (width * height)
        assert background < 0.95, f"{path}: {background:.0%} of the pixels are one colour"
        assert max(ImageStat.Stat(rgb).stddev) > 10
        return len(colours)


def _green_share(path: Path) -> float:
    """Share of pixels in the green the graph fills materialized asset nodes with (a node
    never materialized is grey), so the screenshot shows the run's status, not only shapes."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((g > r + 12) & (g > b + 4)).mean())


def test_lineage_page_renders_in_headless_chromium(
    webserver, asset_nodes, ci_run, monkeypatch
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (`make chromium` installs Debian's package)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = 1800, 1100
    names = sorted(_name(n["assetKey"]) for n in asset_nodes)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{webserver}/asset-groups", wait_until="networkidle", timeout=120_000)
            dismissed = _dismiss_community_dialog(page)
            page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
            graph = page.locator("svg[class*=svgContainer]").first
            graph.wait_for(timeout=60_000)
            _expand_all_groups(page, graph)
            page.get_by_text("finetuned_model", exact=True).first.wait_for(timeout=60_000)
            page.wait_for_load_state("networkidle")
            text = graph.text_content() or ""
            missing = [n for n in names if not _shown(n, text)]
            assert not missing, f"asset nodes not drawn: {missing}"
            page.wait_for_timeout(1500)  # edges and status colours settle after the layout
            lineage = ARTIFACTS / "asset-lineage.png"
            page.screenshot(path=str(lineage))

            page.goto(f"{webserver}/assets/promotion", wait_until="networkidle", timeout=120_000)
            _dismiss_community_dialog(page)
            page.get_by_text("decision_id", exact=True).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            promotion = ARTIFACTS / "promotion-decision.png"
            page.screenshot(path=str(promotion), full_page=True)
        finally:
            browser.close()

    colours = _check_png(lineage, width, height)
    green = _green_share(lineage)
    assert green > 0.005, f"{lineage}: {green:.2%} green: materialized nodes not drawn as such"
    monkeypatch.setenv("DAGSTER_HOME", str(ci_run.dagster_home))  # dagster.yaml reads it
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("promotion"))
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert meta["decision_id"] in body and meta["outcome"] in body
    assert "min_samples" in body and "same_test_set" in body  # the gates table is rendered
    # Keep a copy beside the run's instance too, so a failed CI job can upload either folder.
    for png in (lineage, promotion):
        shutil.copy(png, ci_run.root / png.name)
    print(f"\nUI screenshots ({colours} colours, {green:.1%} materialized-green in the lineage "
          f"view; community dialog "
          f"{'dismissed' if dismissed else 'not shown'}):\n  {lineage}\n  {promotion}")
