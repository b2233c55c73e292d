"""Evaluation generation: batched (left padding, length-sorted) vs one request at a time.

Same tiny base model, same RAG prompts (test-split-like instruction + context), same greedy
decoding and ``max_new_tokens``, through the same ``LocalGenerator.generate``; only
``batch_size`` differs. Reports prompts per second of each and the ratio (target >= 3x), and
checks the two produce the same answers (greedy decoding must not depend on batching).

    python bench/bench_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def prompts(n: int) -> list[str]:
    from llmops.rag import Citation, build_prompt
    from tests.training_data import corpus_texts, instruction_pairs

    rows = instruction_pairs(corpus_texts(max_pdf_pages=10), per_doc=20)
    out = []
    for r in rows[:n]:
        cit = Citation("c", r["doc_id"], r["doc_id"], None, 1.0, r["context"])
        out.append(build_prompt(r["instruction"], [cit]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    n = 32 if args.quick else 96
    max_new = 24

    import torch

    from llmops.base_model import BaseModelConfig, resolve_base_model
    from llmops.rag import LocalGenerator
    from tests.training_data import corpus_texts

    # One thread: on a shared 2-core machine extra intra-op threads spin and thrash, which
    # swamps the comparison; both modes run under the same setting.
    torch.set_num_threads(1)
    work = Path(tempfile.gettempdir()) / "llmops-bench-eval"
    info = resolve_base_model(BaseModelConfig(pretrain_steps=20), texts=corpus_texts(),
                              out_root=work / "bases")
    gen = LocalGenerator.from_folder(info.path, name="tiny")
    batch = prompts(n)
    gen.generate(batch[:2], max_new_tokens=4, batch_size=2)  # warm-up

    t0 = time.perf_counter()
    one = [gen.generate([p], max_new_tokens=max_new, batch_size=1)[0] for p in batch]
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    many = gen.generate(batch, max_new_tokens=max_new, batch_size=args.batch_size)
    t_many = time.perf_counter() - t0

    same = sum(a.text == b.text for a, b in zip(one, many, strict=True))
    tokens = sum(g.tokens_out for g in many)
    print(f"model: tiny llama {info.n_params:,} params, {n} prompts, max_new_tokens={max_new}")
    print(f"one-by-one : {n / t_one:8.1f} prompts/s ({t_one:.2f}s)")
    print(f"batched {args.batch_size:<3}: {n / t_many:8.1f} prompts/s ({t_many:.2f}s, "
          f"{tokens / t_many:.0f} generated tokens/s)")
    ratio = t_one / t_many
    print(f"speed-up   : {ratio:.2f}x (target >= 3x) {'OK' if ratio >= 3 else 'BELOW TARGET'}")
    print(f"identical answers: {same}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
