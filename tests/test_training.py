"""LoRA training: prompt format, packing, a run that helps, resume after a kill, bad configs."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmops.base_model import BaseModelConfig, BaseModelInfo, build_tiny_model
from llmops.training import (
    IGNORE_INDEX,
    ExampleTooLong,
    TrainConfig,
    TrainConfigError,
    TrainResult,
    encode_example,
    encode_split,
    flattening_collator,
    format_example,
    last_complete_checkpoint,
    packing_isolates_examples,
    perplexity,
    prompt_parts,
    train_lora,
    validate,
)
from tests.training_data import REPO_ROOT, corpus_texts, shared_dataset, shared_tiny_base

EXAMPLE = {
    "instruction": "Quote the first sentence of the passage.",
    "context": "Rainfall was low. Reservoirs fell.",
    "response": "Rainfall was low.",
    "doc_id": "d1",
    "task": "extract",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> BaseModelInfo:
    return shared_tiny_base(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_dataset(tmp_path_factory.getbasetemp())[0]


@pytest.fixture(scope="module")
def trained(
    tiny: BaseModelInfo, dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, list[dict[str, Any]]]:
    logs: list[dict[str, Any]] = []
    cfg = TrainConfig(max_steps=60, eval_steps=20, logging_steps=5, batch_size=8,
                      eval_batch_size=64, max_length=256, learning_rate=3e-3,
                      early_stopping_patience=3)
    out = tmp_path_factory.mktemp("lora")
    return train_lora(cfg, tiny.path, dataset, on_log=logs.append, output_dir=out), logs


def test_prompt_format_and_response_only_labels(tiny: BaseModelInfo) -> None:
    from transformers import AutoTokenizer

    prompt, response = format_example(EXAMPLE)
    assert prompt == (
        "### Instruction:\nQuote the first sentence of the passage.\n\n"
        "### Context:\nRainfall was low. Reservoirs fell.\n\n### Response:\n"
    )
    assert response == "Rainfall was low."
    assert "### Context" not in format_example({**EXAMPLE, "context": ""})[0]

    tok = AutoTokenizer.from_pretrained(tiny.path)
    ids, labels = encode_example(tok, EXAMPLE)
    scored = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(scored[:-1]) == "Rainfall was low." and scored[-1] == tok.eos_token_id
    ids_all, labels_all = encode_example(tok, EXAMPLE, loss_on="all")
    assert labels_all == ids_all


def _prompt_text(tok: Any, ids: list[int], labels: list[int]) -> str:
    first = next(i for i, lab in enumerate(labels) if lab != IGNORE_INDEX)
    return tok.decode(ids[:first], skip_special_tokens=True)


def test_truncation_trims_the_context_never_the_instruction(tiny: BaseModelInfo) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    long_ex = {**EXAMPLE, "context": "word " * 400}
    ids, labels = encode_example(tok, long_ex, max_length=64)
    assert len(ids) == 64 and ids[-1] == tok.eos_token_id
    prompt = _prompt_text(tok, ids, labels)
    assert prompt.startswith("### Instruction:\nQuote the first sentence of the passage.")
    assert prompt.endswith("### Response:\n") and "word word" in prompt
    response = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100],
                          skip_special_tokens=True)
    assert response == "Rainfall was low."  # the response is whole
    with pytest.raises(ExampleTooLong):
        encode_example(tok, {**EXAMPLE, "instruction": "why " * 100}, max_length=64)


@pytest.mark.parametrize("max_length", [96, 512])
def test_every_training_row_has_its_whole_instruction_in_view(
    tiny: BaseModelInfo, dataset: Path, max_length: int
) -> None:
    """Each row is one example; the tokens before its response hold its whole instruction and
    the response heading, and a packed batch keeps examples whole and apart."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    split = load_from_disk(str(dataset))["train"]
    rows, dropped = encode_split(split, tok, TrainConfig(max_length=max_length))
    assert len(rows) + len(dropped) == len(split) and len(rows) >= len(split) * 0.9
    kept = [ex for i, ex in enumerate(split) if not any(d.startswith(f"example {i}:")
                                                        for d in dropped)]
    for row, ex in zip(rows, kept, strict=True):
        assert len(row["input_ids"]) <= max_length
        prompt = _prompt_text(tok, row["input_ids"], row["labels"])
        assert prompt.startswith(f"### Instruction:\n{ex['instruction'].strip()}\n\n"), prompt
        assert prompt.endswith("### Response:\n")

    batch = flattening_collator()(rows[:8])
    assert batch["input_ids"].shape[0] == 1  # one padding-free sequence, no pad token
    assert batch["input_ids"].shape[1] == sum(len(r["input_ids"]) for r in rows[:8])
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == list(itertools.accumulate([0] + [len(r["input_ids"]) for r in rows[:7]]))


def test_packed_examples_do_not_attend_to_each_other(tiny: BaseModelInfo, dataset: Path) -> None:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny.path).eval()
    assert not packing_isolates_examples(model)  # with a KV cache, packed examples mix
    model.config.use_cache = False  # as train_lora sets it
    assert packing_isolates_examples(model)
    tok = AutoTokenizer.from_pretrained(tiny.path)
    rows, _ = encode_split(load_from_disk(str(dataset))["train"].select(range(3)), tok,
                           TrainConfig())
    batch = flattening_collator()(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        start = 0
        for row in rows:
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits
            n = len(row["input_ids"])
            assert torch.allclose(packed[:, start : start + n], alone, atol=1e-4)
            start += n


def test_padding_free_training_runs_and_says_so(
    tiny: BaseModelInfo, dataset: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(max_steps=4, eval_steps=2, batch_size=4, packing="padding-free")
    result = train_lora(cfg, tiny.path, dataset, output_dir=tmp_path / "free")
    assert result.packing == "padding-free" and result.global_step == 4
    assert result.eval_loss_final is not None and math.isfinite(result.eval_loss_final)
    auto = train_lora(TrainConfig(max_steps=2, eval_steps=0, batch_size=4), tiny.path, dataset,
                      output_dir=tmp_path / "auto")
    assert auto.packing == "padded"  # CPU/SDPA: padded batches of similar lengths
    with pytest.raises(TrainConfigError, match="packing"):
        validate(TrainConfig(packing="yes"), tiny.path, dataset)


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny: BaseModelInfo) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    head, context, tail = prompt_parts("Who?", "Some context.", tok)
    assert head == "<|user|>Who?\n\nContext:\n" and context == "Some context."
    assert tail == "</s><|assistant|>"
    ids, labels = encode_example(tok, {**EXAMPLE, "context": "word " * 300}, max_length=48)
    prompt = _prompt_text(tok, ids, labels)
    assert prompt.startswith("<|user|>Quote the first sentence") and prompt.endswith(
        "<|assistant|>")


def test_lora_run_lowers_validation_loss_and_test_perplexity(
    trained: tuple[TrainResult, list[dict[str, Any]]], tiny: BaseModelInfo, dataset: Path
) -> None:
    from datasets import load_from_disk

    result, logs = trained
    assert result.global_step == 60 and result.resumed_step == 0
    assert result.eval_loss_start is not None and result.eval_loss_best is not None
    # A 0.65M-parameter base barely pre-trained: whole examples with their instruction are
    # hard for it, so the gain is small but must be there.
    assert result.eval_loss_best < result.eval_loss_start - 0.02, (
        result.eval_loss_start, result.eval_loss_best)
    assert 0 < result.trainable_params < result.total_params // 10
    assert result.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]

    test = load_from_disk(str(dataset))["test"]
    ppl_base = perplexity(tiny.path, data=test)
    ppl_ft = perplexity(result.adapter_dir, data=test)
    print(f"test perplexity: base {ppl_base:.2f} -> fine-tuned {ppl_ft:.2f}")
    assert ppl_ft < ppl_base, (ppl_base, ppl_ft)
    # Perplexity scores the same tokens as the validation loss (one eval batch holds the whole
    # validation split, so Trainer's loss is the token mean too).
    val_ppl = perplexity(result.adapter_dir, data=load_from_disk(str(dataset))["validation"],
                         max_length=256)
    assert val_ppl == pytest.approx(math.exp(result.eval_loss_final), rel=1e-3)

    train_logs = [e for e in logs if "loss" in e]
    eval_logs = [e for e in logs if "eval_loss" in e]
    assert [e["step"] for e in train_logs][:3] == [1, 5, 10]
    assert all("learning_rate" in e for e in train_logs)
    assert [e["step"] for e in eval_logs][:4] == [0, 20, 40, 60]
    lrs = [e["learning_rate"] for e in train_logs]
    assert max(lrs) <= 3e-3 and lrs[-1] < 0.1 * max(lrs)  # cosine decays towards 0

    out = Path(result.output_dir)
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "adapter/tokenizer.json", "train_config.json", "loss_curve.png",
                 "log_history.json", "train_result.json"):
        assert (out / name).is_file(), name
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    # a successful run keeps only its last complete checkpoint and the best one
    best = json.loads((out / "checkpoints/checkpoint-60/trainer_state.json").read_text())[
        "best_model_checkpoint"]
    kept = {p.name for p in (out / "checkpoints").glob("checkpoint-*")}
    assert kept == {"checkpoint-60", Path(best).name}
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lora_r"] == 8 and saved["fingerprint"] == result.fingerprint


def test_rerun_of_a_finished_run_resumes_at_its_end(
    trained: tuple[TrainResult, list[dict[str, Any]]], tiny: BaseModelInfo, dataset: Path
) -> None:
    result, _ = trained
    cfg = TrainConfig(**{k: v for k, v in result.config.items()
                         if k not in {"output_dir", "target_modules"}})
    again = train_lora(cfg, tiny.path, dataset, output_dir=result.output_dir)
    assert again.reused and again.global_step == 60
    assert again.eval_loss_best == pytest.approx(result.eval_loss_best)
    # Outputs lost after the final checkpoint: restored from it, with no extra step.
    Path(result.output_dir, "train_result.json").unlink()
    restored = train_lora(cfg, tiny.path, dataset, output_dir=result.output_dir)
    assert not restored.reused and restored.resumed_step == 60 and restored.global_step == 60
    assert restored.eval_loss_final == pytest.approx(result.eval_loss_final, rel=1e-4)


def test_early_stopping_stops_a_diverging_run(
    tiny: BaseModelInfo, dataset: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(max_steps=60, eval_steps=2, logging_steps=2, learning_rate=0.3,
                      lr_scheduler="constant", warmup_steps=0, early_stopping_patience=1,
                      batch_size=4, max_length=256)
    result = train_lora(cfg, tiny.path, dataset, output_dir=tmp_path)
    assert result.stopped_early and result.global_step < 60, result.global_step


def test_gpt2_default_targets_and_linear_module_listing(tmp_path: Path, dataset: Path) -> None:
    cfg = BaseModelConfig(arch="gpt2", vocab_size=512, n_embd=32, n_layer=1, n_head=2,
                          block_size=64, context_length=256, pretrain_steps=0)
    info = build_tiny_model(corpus_texts()[:4], tmp_path / "gpt2", cfg)
    facts = validate(TrainConfig(max_length=64), info.path, dataset)
    assert facts["arch"] == "gpt2" and facts["target_modules"] == ["c_attn", "c_proj"]
    result = train_lora(TrainConfig(max_length=256, max_steps=3, eval_steps=3, batch_size=2),
                        info.path, dataset, output_dir=tmp_path / "run")
    assert result.global_step == 3 and result.trainable_params > 0
    with pytest.raises(TrainConfigError) as err:
        validate(TrainConfig(target_modules=["q_proj"], max_length=256), info.path, dataset)
    assert "['c_attn', 'c_fc', 'c_proj']" in str(err.value)


def test_bad_configs_fail_before_training(tiny: BaseModelInfo, dataset: Path,
                                          tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    out = tmp_path / "never"
    with pytest.raises(TrainConfigError) as err:
        train_lora(TrainConfig(target_modules=["q_proj", "query_key_value"]), tiny.path,
                   dataset, output_dir=out)
    msg = str(err.value)
    assert "['query_key_value'] not found" in msg
    assert "['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']" in msg

    empty = tmp_path / "empty_ds"
    rows = [dict(EXAMPLE)]
    DatasetDict({"train": Dataset.from_list(rows).select([]),
                 "validation": Dataset.from_list(rows)}).save_to_disk(str(empty))
    with pytest.raises(TrainConfigError, match="the 'train' split is empty"):
        train_lora(TrainConfig(), tiny.path, empty, output_dir=out)

    with pytest.raises(TrainConfigError, match="does not exist") as err:
        train_lora(TrainConfig(), str(tmp_path / "missing-model"), dataset, output_dir=out)
    with pytest.raises(TrainConfigError, match="does not exist"):
        train_lora(TrainConfig(), tiny.path, tmp_path / "missing-ds", output_dir=out)
    with pytest.raises(TrainConfigError, match="unknown training option"):
        TrainConfig.from_dict({"lora_rank": 8})
    with pytest.raises(TrainConfigError, match="exceeds the model's context length"):
        validate(TrainConfig(max_length=4096), tiny.path, dataset)
    assert not out.exists()  # nothing was written: every check ran before training


def test_killed_run_resumes_from_last_checkpoint(
    tiny: BaseModelInfo, dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    params = {
        "train": {"max_steps": 120, "eval_steps": 10, "logging_steps": 5, "batch_size": 8,
                  "early_stopping_patience": 0,
                  "max_length": 256, "save_total_limit": 3},
        "base_model_dir": tiny.path,
        "dataset_path": str(dataset),
        "output_dir": str(out),
    }
    (tmp_path / "params.json").write_text(json.dumps(params))
    cmd = [sys.executable, "-m", "llmops.train_entry", "--config",
           str(tmp_path / "params.json"), "--no-mlflow"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    try:
        while last_complete_checkpoint(out / "checkpoints") is None:
            assert proc.poll() is None, f"entry point exited early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 180s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = last_complete_checkpoint(out / "checkpoints")
    assert killed_at is not None
    step = int(killed_at.name.split("-")[1])
    assert 10 <= step < 120, f"run got to {step} before the kill"
    assert not (out / "train_result.json").exists()

    logs: list[dict[str, Any]] = []
    cfg = TrainConfig.from_dict(params["train"])
    result = train_lora(cfg, tiny.path, dataset, on_log=logs.append, output_dir=out)
    assert result.resumed_from is not None
    assert result.resumed_step >= step  # the newest complete checkpoint at resume time
    assert result.global_step == 120
    trained_steps = [e["step"] for e in logs if "loss" in e]
    assert trained_steps, f"no training step after resuming at {result.resumed_step}: {logs}"
    first_logged = min(trained_steps)
    assert first_logged > result.resumed_step  # no step before the checkpoint was redone
    history_steps = [h["step"] for h in result.log_history if "eval_loss" in h]
    assert 10 in history_steps and 120 in history_steps  # history spans both sessions
