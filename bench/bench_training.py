"""LoRA training: padding-free packing vs padded batches, and what fine-tuning buys.

1. Throughput. Both runs use the same tiny base model, instruction data, batch size, LoRA
   config and number of optimizer steps through the same ``train_lora`` (Trainer) path; only
   ``packing`` differs (transformers' ``DataCollatorWithFlattening`` vs padding each batch to its
   longest example). Throughput counts real (non-padding) tokens per second of training; peak
   RSS is measured per run in its own child process, so the two do not share a high-water mark.
2. Held-out perplexity. A tiny base pre-trained on every document except the test documents,
   fine-tuned on the training documents' examples: base vs fine-tuned perplexity of the test
   split's responses, on documents neither model saw.

    python bench/bench_training.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def prepare(work: Path) -> tuple[str, str]:
    """A tiny base model and an instruction dataset built from the corpus (reused if present)."""
    from llmops.base_model import BaseModelConfig, resolve_base_model
    from tests.training_data import corpus_texts, instruction_pairs, save_instruction_dataset

    texts = corpus_texts()
    info = resolve_base_model(BaseModelConfig(pretrain_steps=20), texts=texts,
                              out_root=work / "bases")
    ds = work / "dataset"
    if not (ds / "dataset_dict.json").is_file():
        save_instruction_dataset(varied_lengths(instruction_pairs(texts)), ds)
    return info.path, str(ds)


def varied_lengths(rows: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """Real instruction data mixes short questions with long contexts: mimic that spread.

    Half the examples drop their context (short QA), the rest keep 1-4x of it, so example
    lengths vary the way they do in practice, which is what padding pays for.
    """
    import random

    rng = random.Random(seed)
    out = []
    for row in rows:
        k = rng.choice([0, 0, 1, 2, 4])
        out.append({**row, "context": " ".join([row["context"]] * k)})
    return out


def child(mode: str, base: str, dataset: str, steps: int, out: str) -> dict:
    """One training run; returns throughput and this process's peak RSS."""
    from llmops.training import TrainConfig, train_lora

    cfg = TrainConfig(max_steps=steps, eval_steps=0, logging_steps=max(1, steps // 4),
                      batch_size=8, max_length=512,
                      packing="padding-free" if mode == "packed" else "padded",
                      save_total_limit=1, warmup_steps=0)
    started = time.perf_counter()
    res = train_lora(cfg, base, dataset, output_dir=out)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "steps": res.global_step,
        "real_tokens": res.train_tokens,
        "train_seconds": res.train_runtime_s,
        "tokens_per_second": res.train_tokens / res.train_runtime_s,
        "rows": res.n_train_rows,
        "packing": res.packing,
        "peak_rss_mb": round(peak_mb, 1),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }


def run_child(mode: str, base: str, dataset: str, steps: int, work: Path) -> dict:
    out = work / f"run-{mode}-{time.time_ns()}"
    cmd = [sys.executable, __file__, "--child", mode, "--base", base, "--dataset", dataset,
           "--steps", str(steps), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps, one repeat")
    parser.add_argument("--child", choices=["packed", "padded"])
    parser.add_argument("--base")
    parser.add_argument("--dataset")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.base, args.dataset, args.steps, args.out)))
        return 0

    steps, repeats = (20, 1) if args.quick else (60, 2)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        base, dataset = prepare(work)
        results: dict[str, list[dict]] = {"packed": [], "padded": []}
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            for mode in ("padded", "packed"):
                results[mode].append(run_child(mode, base, dataset, steps, work))
    best = {m: max(rs, key=lambda r: r["tokens_per_second"]) for m, rs in results.items()}
    for mode in ("padded", "packed"):
        r = best[mode]
        print(f"{mode:>7}: {r['tokens_per_second']:9.0f} real tokens/s  "
              f"({r['real_tokens']} tokens in {r['train_seconds']:.2f}s, {r['steps']} steps, "
              f"{r['rows']} rows)  peak RSS {r['peak_rss_mb']:.0f} MB")
    speedup = best["packed"]["tokens_per_second"] / best["padded"]["tokens_per_second"]
    mem = best["packed"]["peak_rss_mb"] / best["padded"]["peak_rss_mb"]
    per_step = best["padded"]["real_tokens"] / (best["padded"]["steps"] * 8)
    print(f"padded baseline: {per_step:.0f} real tokens per example row on average")
    print(f"packing speedup (real tokens/s): {speedup:.2f}x  "
          f"(packed = {best['packed']['packing']})")
    print(f"peak RSS packed/padded: {mem:.2f}x")
    held_out_perplexity(40 if args.quick else 150)
    return 0


def held_out_perplexity(steps: int) -> None:
    """Base vs fine-tuned perplexity on test documents that neither model saw."""
    from datasets import load_from_disk

    from llmops.base_model import BaseModelConfig, resolve_base_model
    from llmops.training import TrainConfig, perplexity, train_lora
    from tests.training_data import (
        corpus_texts,
        doc_id_of,
        instruction_pairs,
        save_instruction_dataset,
    )

    texts = corpus_texts()
    rows = instruction_pairs(texts)
    with tempfile.TemporaryDirectory(prefix="bench-ppl-") as tmp:
        work = Path(tmp)
        save_instruction_dataset(rows, work / "dataset")
        dsd = load_from_disk(str(work / "dataset"))
        unseen = set(dsd["test"]["doc_id"]) | set(dsd["validation"]["doc_id"])
        seen_texts = [t for i, t in enumerate(texts) if doc_id_of(i, t) not in unseen]
        base = resolve_base_model(BaseModelConfig(), texts=seen_texts, out_root=work / "bases")
        cfg = TrainConfig(max_steps=steps, eval_steps=max(10, steps // 5), save_total_limit=1)
        res = train_lora(cfg, base.path, str(work / "dataset"), output_dir=work / "lora")
        ppl_base = perplexity(base.path, data=dsd["test"], max_length=cfg.max_length)
        ppl_ft = perplexity(res.adapter_dir, data=dsd["test"], max_length=cfg.max_length)
    n_docs = len(set(dsd["test"]["doc_id"]))
    print(f"held-out test perplexity ({len(dsd['test'])} examples from {n_docs} documents "
          f"the base did not pre-train on; {len(seen_texts)}/{len(texts)} texts seen): "
          f"base {ppl_base:.1f} -> fine-tuned {ppl_ft:.1f} (ratio {ppl_ft / ppl_base:.2f}, "
          f"{res.global_step} steps, {res.packing})")


if __name__ == "__main__":
    sys.exit(main())
