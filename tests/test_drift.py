"""Drift tests on real text: resamples of the reference stay quiet, a shifted batch is caught."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from llmops.drift import MIN_TEXTS, Thresholds, detect_drift, load_texts

N = 40
ROUNDS = 20


@pytest.fixture(scope="module")
def pools(corpus_dir):
    """English lines of the corpus PDFs, and Arabic lines of the corpus OCR ground truth."""
    import pdfplumber

    english: list[str] = []
    for pdf in sorted((corpus_dir / "pdfs").glob("*.pdf")):
        try:
            with pdfplumber.open(pdf) as doc:
                for page in doc.pages[:6]:
                    english += [
                        line.strip() for line in (page.extract_text() or "").splitlines()
                        if len(line.strip()) >= 40 and sum(c.isalpha() for c in line) > 25
                    ]
        except Exception:  # the corpus has deliberately broken PDFs
            continue
    arabic = [
        p.read_text(encoding="utf-8").strip()
        for p in sorted((corpus_dir / "arabic-ocr-lines").glob("*.gt.txt"))
    ]
    english = list(dict.fromkeys(english))
    if len(english) < 3 * N or len(arabic) < N:
        pytest.skip(f"corpus too small for the drift study ({len(english)} en, {len(arabic)} ar)")
    return english, [a for a in arabic if a]


@pytest.fixture(scope="module")
def cached(pools):
    """Embeddings and languages computed once per text, so the 40 studies stay fast."""
    from llmops.arabic import detect_language
    from llmops.embedding import Embedder

    english, arabic = pools
    texts = english + arabic
    vectors = dict(zip(texts, Embedder().encode(texts), strict=True))
    languages = {t: detect_language(t) for t in texts}

    import numpy as np

    return (lambda batch: np.stack([vectors[t] for t in batch])), languages.__getitem__


def _study(reference, current, cached):
    embed, language = cached
    return detect_drift(reference, current, embed=embed, detect_language=language,
                        thresholds=Thresholds(permutations=200))


def test_false_alarms_and_detection_over_resamples(pools, cached):
    english, arabic = pools
    rng = random.Random(0)
    false_alarms = detections = 0
    for _ in range(ROUNDS):
        sample = rng.sample(english, 2 * N)
        quiet = _study(sample[:N], sample[N:], cached)
        false_alarms += quiet.drift
        if quiet.drift:
            print([t.to_dict() for t in quiet.tests if t.drift])
        detections += _study(rng.sample(english, N), rng.sample(arabic, N), cached).drift
    print(f"false alarm rate {false_alarms / ROUNDS:.2f}, detection {detections / ROUNDS:.2f}")
    assert false_alarms / ROUNDS <= 0.05
    assert detections / ROUNDS >= 0.95


def test_report_shape_and_each_test_sees_its_shift(pools, cached):
    english, arabic = pools
    report = _study(english[:N], arabic[:N], cached).to_dict()
    assert set(report) == {"drift", "n_reference", "n_current", "tests"}
    by = {t["name"]: t for t in report["tests"]}
    assert set(by) == {"embedding_mmd", "length_psi", "language_psi"}
    assert by["embedding_mmd"]["drift"] and by["embedding_mmd"]["p_value"] < 0.01
    assert by["language_psi"]["drift"] and "threshold" in by["language_psi"]


def test_too_few_texts_is_named():
    with pytest.raises(ValueError, match="current: 2 non-empty texts"):
        detect_drift(["a text"] * MIN_TEXTS, ["one", "two", " "])


def test_cli_on_folders_and_jsonl(tmp_path, pools):
    from typer.testing import CliRunner

    from pipelines.cli import app

    english, arabic = pools
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, text in enumerate(english[:20]):
        (ref / f"{i}.txt").write_text(text, encoding="utf-8")
    cur = tmp_path / "cur.jsonl"
    cur.write_text("\n".join(json.dumps({"text": t}) for t in arabic[:20]), encoding="utf-8")
    out = CliRunner().invoke(app, ["drift", str(ref), str(cur), "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["drift"] is True and payload["n_reference"] == payload["n_current"] == 20
    for test in payload["tests"]:
        assert {"name", "statistic", "drift"} <= set(test)
        assert "p_value" in test or "threshold" in test
    assert load_texts(cur)[0] == arabic[0]

    (tmp_path / "bad.jsonl").write_text('{"txt": "no text field"}\n')
    bad = CliRunner().invoke(app, ["drift", str(ref), str(tmp_path / "bad.jsonl")])
    assert bad.exit_code == 1 and "bad.jsonl:1" in bad.output


def test_drift_sensor_requests_one_retraining_per_drift_event(pools, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOPS_DATA_DIR", str(tmp_path / "data"))
    import dagster as dg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmops.drift import drift_window
    from resources.knowledge import EmbedderResource, VectorStoreResource
    from resources.mlflow import MLflowResource
    from resources.serving import ServingResource
    from sensors import drift as sensor_module

    english, arabic = pools
    english = random.Random(1).sample(english, 2 * N)  # two halves of one distribution

    def chunks(texts, doc):
        return [{"chunk_id": f"{doc}-{i}", "doc_id": doc, "text": t} for i, t in enumerate(texts)]

    corpus = {"rows": chunks(english[:N], "en-report")}
    monkeypatch.setattr(
        sensor_module, "load_window",
        lambda *_: (drift_window("1", {"en-report"}, corpus["rows"]), {}),
    )
    resources = {"vector_store": VectorStoreResource(), "embedder": EmbedderResource(),
                 "mlflow": MLflowResource(), "serving": ServingResource()}

    def evaluate(instance, cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        result = sensor_module.drift_sensor(ctx)
        return result, ctx.cursor

    with dg.instance_for_test() as instance:
        # More English like the training documents: tested, no drift, nothing requested.
        corpus["rows"] += chunks(english[N : 2 * N], "en-more")
        result, cursor = evaluate(instance, None)
        assert isinstance(result, dg.SkipReason) and "no drift" in result.skip_message
        # Arabic documents after an English champion: exactly one retraining request.
        corpus["rows"] += chunks(arabic[:N], "ar-notices")
        result, cursor = evaluate(instance, cursor)
        assert isinstance(result, dg.RunRequest), result
        assert result.run_key.startswith("drift-")
        assert "embedding_mmd" in result.tags["llmops/drift_tests"]
        assert result.tags["llmops/champion_version"] == "1"
        plot = Path(result.tags["llmops/drift_plot"])
        assert plot.read_bytes()[:4] == b"\x89PNG" and plot.with_suffix(".md").is_file()
        # The same data again: nothing.
        again, cursor = evaluate(instance, cursor)
        assert isinstance(again, dg.SkipReason) and "already tested" in again.skip_message

        # No new data, but the champion's nightly score fell since its promotion: retrain once.
        corpus["rows"] = chunks(english[:N], "en-report") + chunks(english[N : 2 * N], "en-more")
        rng = random.Random(5)
        for i, mean in enumerate((0.62, 0.61, 0.41)):  # promotion, a steady night, a bad night
            path = tmp_path / f"scores-{i}.parquet"
            pq.write_table(pa.table({"string_similarity": [
                min(1.0, max(0.0, rng.gauss(mean, 0.08))) for _ in range(40)]}), path)
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key="evaluation", partition="champion",
                metadata={"model_version": "1", "scores_path": dg.MetadataValue.path(str(path))},
            ))
            result, cursor = evaluate(instance, cursor)
            if i < 2:
                assert isinstance(result, dg.SkipReason), result  # no decay yet
        assert isinstance(result, dg.RunRequest), result
        assert result.tags["llmops/drift_tests"] == "string_similarity_decay"
        again, _ = evaluate(instance, cursor)
        assert isinstance(again, dg.SkipReason) and "already tested" in again.skip_message


def test_score_decay_needs_a_real_and_noticeable_drop():
    from llmops.drift import score_decay

    rng = random.Random(0)
    same = [score_decay([rng.gauss(0.6, 0.1) for _ in range(40)],
                        [rng.gauss(0.6, 0.1) for _ in range(40)]).drift for _ in range(20)]
    fell = [score_decay([rng.gauss(0.6, 0.1) for _ in range(40)],
                        [rng.gauss(0.45, 0.1) for _ in range(40)]).drift for _ in range(20)]
    tiny = score_decay([rng.gauss(0.6, 0.01) for _ in range(400)],
                       [rng.gauss(0.59, 0.01) for _ in range(400)])
    print(f"\nscore decay: false alarms {sum(same)}/20, detected {sum(fell)}/20")
    assert sum(same) <= 1 and sum(fell) >= 19
    assert not tiny.drift and tiny.p_value < 0.01  # significant but below min_drop
    with pytest.raises(ValueError, match="need >= 2"):
        score_decay([0.5], [0.4, 0.3])


def test_cached_embedder_embeds_only_unknown_texts():
    import numpy as np

    from llmops.drift import CachedEmbedder

    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 3))

    embed = CachedEmbedder(encode, known={"a": [0.0, 0.0, 1.0]})
    out = embed(["a", "b", "b", "c"])
    assert out.shape == (4, 3) and list(out[0]) == [0.0, 0.0, 1.0]
    assert calls == [["b", "c"]] and embed.encoded == 2
    embed(["a", "b", "c"])
    assert len(calls) == 1  # everything known now


def test_large_samples_are_subsampled_for_the_embedding_test():
    from llmops.drift import subsample

    texts = [f"t{i}" for i in range(5000)]
    sample = subsample(texts, 2000, seed=3)
    assert len(sample) == 2000 == len(set(sample)) and sample == subsample(texts, 2000, seed=3)
    assert subsample(texts[:10], 2000) == texts[:10]


def test_drift_report_reaches_the_retraining_runs_first_asset(tmp_path):
    from assets.dataset import _trigger_metadata
    from llmops.drift import DriftReport, DriftTest, plot_report

    report = DriftReport(True, 10, 10, [DriftTest("length_psi", 0.9, True, threshold=0.25)])
    plot = plot_report(report, ["a" * 10] * 10, ["b" * 90] * 10, tmp_path / "k.png")
    plot.with_suffix(".md").write_text(report.markdown())
    meta = _trigger_metadata({"llmops/trigger": "drift", "llmops/drift_plot": str(plot)})
    assert meta["trigger"] == "drift"
    assert "length_psi" in meta["drift_report"].value
    assert meta["drift_plot"].value.startswith("![drift](data:image/png;base64,")
    assert _trigger_metadata({}) == {}
