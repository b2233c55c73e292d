"""LoRA fine-tuning of a causal LM on the instruction dataset, with resumable checkpoints.

Choices, and why:
- transformers ``Trainer`` (not a custom loop): it gives checkpoint/resume (optimizer, scheduler,
  RNG and data position), periodic evaluation, early stopping, gradient accumulation and
  bf16/gradient checkpointing on GPU for free; ``bench/bench_training.py`` measures its cost.
- Every example is trained whole, with its instruction in view: one that is longer than
  ``max_length`` has its context trimmed (``encode_example``), never its instruction or the
  response heading; the model's chat template is used when it has one (instruct models).
- Batches never split an example. ``packing="padding-free"`` (transformers'
  ``DataCollatorWithFlattening``) makes a batch one sequence whose position ids restart at each
  example, so no compute goes to padding and no example attends to another (checked per model
  by ``packing_isolates_examples``). It pays off with flash-attention's varlen kernels; CPU/SDPA
  attention over the flattened batch costs more than the padding it saves, so ``auto`` uses
  padded batches of similar lengths there (``bench/bench_training.py`` measures both).
- Loss on the response only (``loss_on="response"``, the default): prompt tokens get label -100,
  so the model learns to answer, not to reproduce instructions. ``perplexity`` scores exactly the
  same tokens (response + EOS given the same trimmed prompt), so base and fine-tuned numbers are
  comparable with the validation loss. ``loss_on="all"`` trains on every token instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

IGNORE_INDEX = -100
PACKING_MODES = {"auto", "padding-free", "padded"}
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
CHECKPOINT_DIR = "checkpoints"

# LoRA targets per architecture (config.model_type): the attention projections are the usual
# choice; the output projection is included because tiny models have few other places to adapt.
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "gptj": ["q_proj", "v_proj"],
    "opt": ["q_proj", "v_proj"],
    "bloom": ["query_key_value"],
    "falcon": ["query_key_value"],
    "gpt_bigcode": ["c_attn"],
}


class TrainConfigError(ValueError):
    """Bad training input found before any training starts; the message lists every problem."""


@dataclass
class TrainConfig:
    """Everything that shapes a LoRA run; stored next to the adapter and logged to MLflow."""

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: DEFAULT_TARGET_MODULES[arch] or all-linear
    learning_rate: float = 3e-3
    lr_scheduler: str = "cosine"  # cosine | linear | constant | constant_with_warmup
    warmup_steps: float = 0.05  # >= 1: steps; < 1: fraction of the total steps
    weight_decay: float = 0.0
    num_epochs: float = 1.0  # used when max_steps <= 0
    max_steps: int = 150
    batch_size: int = 8
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    max_length: int = 512  # tokens of one example; longer ones have their context trimmed
    # auto | padding-free | padded. auto: padding-free with flash-attention's varlen kernels
    # (GPU); padded batches of similar lengths otherwise, since CPU/SDPA attention over a
    # flattened batch is quadratic in the whole batch (bench/bench_training.py measures it).
    packing: str = "auto"
    loss_on: str = "response"  # response | all
    eval_steps: int = 25  # <= 0: no periodic evaluation and no early stopping
    logging_steps: int = 5
    early_stopping_patience: int = 3  # <= 0: disabled
    early_stopping_threshold: float = 0.0
    save_steps: int | None = None  # None: eval_steps (must be a multiple of eval_steps)
    save_total_limit: int = 2
    seed: int = 13
    bf16: bool | str = "auto"  # auto = only on a CUDA GPU that supports it
    gradient_checkpointing: bool | str = "auto"  # auto = only on a CUDA GPU
    merge_adapter: bool = False
    output_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(
                f"unknown training option(s) {unknown}; known options: {sorted(known)}"
            )
        return cls(**data)

    def fingerprint(self, base_model_dir: str, dataset_path: str) -> str:
        """Identity of the optimisation trajectory: checkpoints are only resumed when it matches."""
        skip = {"output_dir", "merge_adapter", "save_total_limit", "early_stopping_patience",
                "early_stopping_threshold", "logging_steps", "eval_batch_size"}
        keyed = {k: v for k, v in self.to_dict().items() if k not in skip}
        keyed["base_model_dir"] = str(Path(base_model_dir).resolve())
        keyed["dataset_path"] = str(Path(dataset_path).resolve())
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """What a finished (or resumed and finished) run produced."""

    output_dir: str
    adapter_dir: str
    merged_dir: str | None
    global_step: int
    resumed_from: str | None
    resumed_step: int
    train_loss: float | None
    eval_loss_start: float | None
    eval_loss_best: float | None
    eval_loss_final: float | None
    stopped_early: bool
    train_tokens: int
    train_runtime_s: float
    tokens_per_second: float
    trainable_params: int
    total_params: int
    n_train_examples: int
    n_train_rows: int
    n_dropped_examples: int
    packing: str  # padding-free | padded | padded (model does not isolate packed examples)
    target_modules: list[str]
    loss_curve_png: str | None
    config: dict[str, Any]
    fingerprint: str = ""
    reused: bool = False  # True: this exact run had already finished; nothing was trained
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- prompt format


class ExampleTooLong(ValueError):
    """The instruction and the response heading alone do not fit in ``max_length`` tokens."""


CONTEXT_MARKER = "\x00LLMOPS_CONTEXT\x00"


def prompt_parts(
    instruction: str, context: str = "", tokenizer: Any = None
) -> tuple[str, str, str]:
    """``(head, context, tail)``: the prompt is their concatenation, and only ``context`` may be
    trimmed to fit a token budget, so the instruction (in ``head``) and the response heading (in
    ``tail``) always survive.

    A tokenizer with a chat template (instruct models) gets its own format, the user turn
    holding the instruction and the context; otherwise the Alpaca-style headings are used.
    """
    instruction, context = instruction.strip(), context.strip()
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        content = f"{instruction}\n\nContext:\n{CONTEXT_MARKER}" if context else instruction
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        head, _, tail = text.partition(CONTEXT_MARKER)
        return (head, context, tail) if context else (text, "", "")
    head = f"### Instruction:\n{instruction}\n\n"
    if not context:
        return head, "", "### Response:\n"
    return head + "### Context:\n", context, "\n\n### Response:\n"


def format_example(ex: Mapping[str, Any], tokenizer: Any = None) -> tuple[str, str]:
    """Prompt and response text of one instruction example."""
    head, context, tail = prompt_parts(
        str(ex.get("instruction") or ""), str(ex.get("context") or ""), tokenizer
    )
    return head + context + tail, str(ex.get("response") or "").strip()


def _prompt_ids(tokenizer: Any, instruction: str, context: str) -> tuple[list[int], ...]:
    """Token ids of head, context and tail, each tokenised on its own (the same in training and
    generation, so trimming the context never changes how the instruction is tokenised)."""
    head, ctx, tail = prompt_parts(instruction, context, tokenizer)
    chat = bool(getattr(tokenizer, "chat_template", None))
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None and not chat else []

    def enc(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    return bos + enc(head), enc(ctx), enc(tail)


def encode_prompt(
    tokenizer: Any, instruction: str, context: str = "", max_tokens: int | None = None
) -> list[int]:
    """Prompt token ids whose context is cut at its end to fit ``max_tokens``."""
    head, ctx, tail = _prompt_ids(tokenizer, instruction, context)
    if max_tokens is not None:
        ctx = ctx[: _room(head, tail, max_tokens)]
    return head + ctx + tail


def _room(head: list[int], tail: list[int], limit: int, needed: int = 0) -> int:
    """Tokens left for context (and response) once the instruction and headings are placed;
    they are never cut, so an example where they leave less than ``needed`` is too long."""
    room = limit - len(head) - len(tail)
    if room < needed:
        raise ExampleTooLong(
            f"instruction + response heading take {len(head) + len(tail)} tokens of the "
            f"{limit} available"
        )
    return room


def encode_example(
    tokenizer: Any,
    ex: Mapping[str, Any],
    loss_on: str = "response",
    max_length: int | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example: ``prompt response eos``, never more than
    ``max_length`` tokens.

    Labels are -100 on the prompt when ``loss_on="response"``. When too long, the context is
    trimmed first (its end goes); the response is only cut when it would otherwise take more
    than half of what the instruction and headings leave. Raises ``ExampleTooLong`` when the
    instruction and headings alone do not fit.
    """
    head, ctx, tail = _prompt_ids(
        tokenizer, str(ex.get("instruction") or ""), str(ex.get("context") or "")
    )
    response = str(ex.get("response") or "").strip()
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    r_ids = (tokenizer(response, add_special_tokens=False)["input_ids"] if response else []) + eos
    if max_length is not None:
        rest = _room(head, tail, max_length, needed=1)
        r_ids = r_ids[: max(rest - len(ctx), rest // 2, 1)]
        ctx = ctx[: rest - len(r_ids)]
    p_ids = head + ctx + tail
    ids = p_ids + r_ids
    labels = list(ids) if loss_on == "all" else [IGNORE_INDEX] * len(p_ids) + list(r_ids)
    return ids, labels


def encode_split(
    split: Iterable[Mapping[str, Any]], tokenizer: Any, cfg: TrainConfig
) -> tuple[list[dict[str, list[int]]], list[str]]:
    """One row per example (never split, never merged) and the reasons examples were dropped.

    Rows are unpadded; the collator either flattens a batch into one padding-free sequence
    (``packing``) or pads it.
    """
    rows: list[dict[str, list[int]]] = []
    dropped: list[str] = []
    for i, ex in enumerate(split):
        try:
            ids, labels = encode_example(tokenizer, ex, cfg.loss_on, cfg.max_length)
        except ExampleTooLong as exc:
            dropped.append(f"example {i}: {exc}")
            continue
        if any(x != IGNORE_INDEX for x in labels):
            rows.append({"input_ids": ids, "labels": labels})
    return rows, dropped


class PadCollator:
    """Pads a batch to its longest row: the baseline when packing is off or unsupported."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[Mapping[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)

        def pad(key: str, value: int) -> Any:
            return torch.tensor([list(r[key]) + [value] * (width - len(r[key])) for r in rows])

        return {
            "input_ids": pad("input_ids", self.pad_id),
            "labels": pad("labels", IGNORE_INDEX),
            "attention_mask": torch.tensor(
                [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
            ),
        }


def flattening_collator() -> Any:
    """Padding-free packing: the batch becomes one sequence whose ``position_ids`` restart at
    every example, which transformers turns into a block-diagonal attention mask (examples never
    attend to each other; ``packing_isolates_examples`` verifies it for the model at hand)."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)


def packing_isolates_examples(model: Any) -> bool:
    """True when the model's logits for an example are the same packed after another example
    as alone: its attention honours packed ``position_ids``. Called as training calls the model
    (its config's ``use_cache``: with a cache, transformers does not isolate packed examples)."""
    import torch

    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(4, vocab, (1, 7), generator=gen)
    b = torch.randint(4, vocab, (1, 9), generator=gen)
    packed = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(7), torch.arange(9)]).unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=b).logits
            together = model(input_ids=packed, position_ids=positions).logits[:, 7:]
    finally:
        model.train(was_training)
    atol = 1e-4 if alone.dtype == torch.float32 else 5e-2
    return bool(torch.allclose(alone.float(), together.float(), atol=atol))


# --------------------------------------------------------------------------- validation


def linear_module_names(model: Any) -> list[str]:
    """Distinct leaf names of the Linear/Conv1D layers: what LoRA ``target_modules`` can name."""
    import torch
    from transformers.pytorch_utils import Conv1D

    names = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear | Conv1D) and name
    }
    names.discard("lm_head")
    return sorted(names)


def _skeleton(model_dir: str | Path) -> Any:
    """The model built on the meta device: module names without allocating any weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def resolve_target_modules(cfg: TrainConfig, arch: str) -> list[str] | str:
    """Configured targets, else the architecture's default, else peft's ``all-linear``."""
    if cfg.target_modules:
        return list(cfg.target_modules)
    return DEFAULT_TARGET_MODULES.get(arch, "all-linear")


def validate(cfg: TrainConfig, model_dir: str | Path, dataset_path: str | Path) -> dict[str, Any]:
    """Check model, dataset and config before spending any compute; raise with every problem.

    Returns facts the run needs (architecture, resolved targets, split sizes).
    """
    problems: list[str] = []
    facts: dict[str, Any] = {}
    if cfg.lora_r <= 0:
        problems.append(f"lora_r must be > 0 (got {cfg.lora_r})")
    if not 0 <= cfg.lora_dropout < 1:
        problems.append(f"lora_dropout must be in [0, 1) (got {cfg.lora_dropout})")
    if cfg.learning_rate <= 0:
        problems.append(f"learning_rate must be > 0 (got {cfg.learning_rate})")
    if cfg.lr_scheduler not in {"cosine", "linear", "constant", "constant_with_warmup"}:
        problems.append(f"lr_scheduler {cfg.lr_scheduler!r}: expected cosine|linear|constant")
    if cfg.packing not in PACKING_MODES:
        problems.append(f"packing {cfg.packing!r}: expected one of {sorted(PACKING_MODES)}")
    if cfg.loss_on not in {"response", "all"}:
        problems.append(f"loss_on {cfg.loss_on!r}: expected 'response' or 'all'")
    if cfg.batch_size < 1 or cfg.gradient_accumulation_steps < 1:
        problems.append("batch_size and gradient_accumulation_steps must be >= 1")
    if cfg.max_length < 8:
        problems.append(f"max_length must be >= 8 (got {cfg.max_length})")
    if cfg.max_steps <= 0 and cfg.num_epochs <= 0:
        problems.append("set max_steps > 0 or num_epochs > 0")
    save_steps = cfg.save_steps or cfg.eval_steps
    if cfg.eval_steps > 0 and save_steps % cfg.eval_steps:
        problems.append(
            f"save_steps ({save_steps}) must be a multiple of eval_steps ({cfg.eval_steps}): "
            "the best checkpoint is chosen among evaluated ones"
        )

    model_path = Path(model_dir)
    if not model_path.is_dir():
        problems.append(f"base model folder {str(model_path)!r} does not exist")
    elif not (model_path / "config.json").is_file():
        problems.append(f"base model folder {str(model_path)!r} has no config.json")
    else:
        skeleton = _skeleton(model_path)
        arch = skeleton.config.model_type
        facts["arch"] = arch
        max_pos = getattr(skeleton.config, "max_position_embeddings", None) or getattr(
            skeleton.config, "n_positions", None
        )
        if max_pos and cfg.max_length > max_pos:
            problems.append(
                f"max_length {cfg.max_length} exceeds the model's context length {max_pos}"
            )
        targets = resolve_target_modules(cfg, arch)
        facts["target_modules"] = targets
        if isinstance(targets, list):
            module_names = {n for n, _ in skeleton.named_modules()}
            leaves = {n.rsplit(".", 1)[-1] for n in module_names}
            missing = [t for t in targets if t not in leaves and t not in module_names]
            if missing:
                problems.append(
                    f"target_modules {missing} not found in the {arch} model at {model_path}; "
                    f"its linear modules are: {linear_module_names(skeleton)}"
                )

    ds_path = Path(dataset_path)
    if not ds_path.exists():
        problems.append(f"dataset {str(ds_path)!r} does not exist")
    else:
        from datasets import DatasetDict, load_from_disk

        try:
            dsd = load_from_disk(str(ds_path))
        except Exception as exc:  # a folder that is not a saved dataset, or an empty split
            empty = _empty_saved_splits(ds_path)
            if empty:
                problems.extend(
                    f"dataset {str(ds_path)!r}: the {split!r} split is empty" for split in empty
                )
            else:
                problems.append(f"dataset {str(ds_path)!r} cannot be loaded: {exc}")
        else:
            if not isinstance(dsd, DatasetDict):
                problems.append(
                    f"dataset {str(ds_path)!r} is a single split; expected a DatasetDict "
                    "with train/validation/test"
                )
            else:
                facts["splits"] = {k: len(v) for k, v in dsd.items()}
                for split in ("train", "validation"):
                    if split not in dsd:
                        problems.append(
                            f"dataset {str(ds_path)!r} has no {split!r} split "
                            f"(splits: {sorted(dsd)})"
                        )
                    elif len(dsd[split]) == 0:
                        problems.append(f"dataset {str(ds_path)!r}: the {split!r} split is empty")
                    else:
                        missing_cols = {"instruction", "response"} - set(dsd[split].column_names)
                        if missing_cols:
                            problems.append(
                                f"dataset {str(ds_path)!r} split {split!r} lacks fields "
                                f"{sorted(missing_cols)}"
                            )
    if problems:
        raise TrainConfigError("training config is invalid:\n- " + "\n- ".join(problems))
    return facts


def _empty_saved_splits(ds_path: Path) -> list[str]:
    """Splits saved with zero rows: ``datasets`` writes them with no shard and cannot reload."""
    try:
        splits = json.loads((ds_path / "dataset_dict.json").read_text())["splits"]
        return [
            split
            for split in splits
            if json.loads((ds_path / split / "state.json").read_text()).get("_data_files") == []
        ]
    except (OSError, ValueError, KeyError):
        return []


# --------------------------------------------------------------------------- checkpoints


def last_complete_checkpoint(folder: str | Path) -> Path | None:
    """Newest ``checkpoint-N`` whose trainer_state.json (written last by Trainer) parses.

    A process killed while writing a checkpoint leaves a partial folder; it is skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for sub in root.iterdir():
        if sub.is_dir() and sub.name.startswith("checkpoint-"):
            try:
                step = int(sub.name.split("-", 1)[1])
                json.loads((sub / "trainer_state.json").read_text())
            except (ValueError, OSError):
                continue
            found.append((step, sub))
    return max(found)[1] if found else None


def _prepare_checkpoint_dir(out: Path, fingerprint: str) -> Path:
    """Checkpoints of a different config are moved aside (never deleted), not resumed."""
    ckpt = out / CHECKPOINT_DIR
    stamp = ckpt / "fingerprint.txt"
    if ckpt.is_dir() and stamp.is_file() and stamp.read_text().strip() != fingerprint:
        old = stamp.read_text().strip()
        ckpt.rename(out / f"{CHECKPOINT_DIR}-{old}-{int(time.time())}")
    ckpt.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return ckpt


# --------------------------------------------------------------------------- training


def _device_flags(cfg: TrainConfig) -> tuple[bool, bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cfg.bf16 if isinstance(cfg.bf16, bool) else cuda and torch.cuda.is_bf16_supported()
    gc = (
        cfg.gradient_checkpointing if isinstance(cfg.gradient_checkpointing, bool) else cuda
    )
    return cuda, bool(bf16) and cuda, bool(gc)


def load_tokenizer(model_dir: str | Path) -> Any:
    """Tokenizer with a pad token (many causal LMs ship without one: reuse EOS)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def train_lora(
    cfg: TrainConfig,
    base_model_dir: str | Path,
    dataset_path: str | Path,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    output_dir: str | Path | None = None,
) -> TrainResult:
    """Validate, then LoRA fine-tune; resumes from the newest complete checkpoint of this config.

    Every Trainer log (loss, learning_rate, eval_loss, ...) is forwarded to ``on_log`` with its
    step. Writes adapter + tokenizer, train_config.json, log_history.json, loss_curve.png and
    train_result.json into the output folder (and ``merged/`` when ``merge_adapter``).
    """
    facts = validate(cfg, base_model_dir, dataset_path)
    out_str = output_dir or cfg.output_dir
    if not out_str:
        raise TrainConfigError("output_dir is not set")
    out = Path(out_str).resolve()
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from datasets import Dataset, load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    cuda, bf16, grad_ckpt = _device_flags(cfg)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(base_model_dir)
    dsd = load_from_disk(str(dataset_path))
    train_rows, dropped = encode_split(dsd["train"], tokenizer, cfg)
    eval_rows, eval_dropped = encode_split(dsd["validation"], tokenizer, cfg)
    if not train_rows or not eval_rows:
        raise TrainConfigError(
            f"dataset {dataset_path}: no trainable example within max_length={cfg.max_length} "
            f"(train rows {len(train_rows)}, validation rows {len(eval_rows)}); "
            f"first problems: {(dropped + eval_dropped)[:3]}"
        )

    model = AutoModelForCausalLM.from_pretrained(
        base_model_dir, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    # No KV cache while training: besides wasting memory, a cache makes transformers ignore
    # packed position ids and let packed examples attend to each other.
    model.config.use_cache = False
    packing = cfg.packing
    if packing == "auto":
        attention = str(getattr(model.config, "_attn_implementation", "") or "")
        packing = "padding-free" if attention.startswith("flash") else "padded"
    if packing == "padding-free" and not packing_isolates_examples(model):
        packing = "padded (model does not isolate packed examples)"
    padded = packing != "padding-free"
    targets = facts["target_modules"]
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        fan_in_fan_out=facts["arch"] in {"gpt2", "gpt_bigcode"},  # Conv1D stores W transposed
    )
    if grad_ckpt:
        model.enable_input_require_grads()
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    fingerprint = cfg.fingerprint(str(base_model_dir), str(dataset_path))
    done = _finished_result(out, fingerprint, cfg)
    if done is not None:
        return done
    ckpt_dir = _prepare_checkpoint_dir(out, fingerprint)
    resume = last_complete_checkpoint(ckpt_dir)
    resumed_step = int(resume.name.split("-")[1]) if resume else 0

    evaluate = cfg.eval_steps > 0
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.num_epochs,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_steps if evaluate else None,
        eval_on_start=evaluate and resume is None,
        save_strategy="steps" if evaluate or cfg.save_steps else "no",
        save_steps=cfg.save_steps or cfg.eval_steps or 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        gradient_checkpointing=grad_ckpt,
        use_cpu=not cuda,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives a kill
        # padded batches of similar lengths waste little padding
        train_sampling_strategy="group_by_length" if padded else "random",
    )

    class ForwardLogs(TrainerCallback):
        """Hands every Trainer log to the caller (Pipes messages, MLflow, a test)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if on_log is not None and logs:
                on_log({"step": state.global_step, **logs})

    callbacks: list[Any] = [ForwardLogs()]
    if evaluate and cfg.early_stopping_patience > 0:
        callbacks.append(
            EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold)
        )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if evaluate else None,
        data_collator=PadCollator(tokenizer.pad_token_id) if padded else flattening_collator(),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # logs go to on_log; no duplicate dict prints
    started = time.perf_counter()
    if resume is not None and _checkpoint_is_final(resume):
        # Killed after the last checkpoint but before the outputs were written: Trainer would
        # run one extra step on resume, so restore the best checkpoint's weights instead.
        train_loss = _restore_final(trainer, resume)
    else:
        train_loss = trainer.train(
            resume_from_checkpoint=str(resume) if resume else None
        ).training_loss
    runtime = time.perf_counter() - started
    state = trainer.state
    final_eval = trainer.evaluate()["eval_loss"] if evaluate else None

    adapter_dir = out / ADAPTER_DIR
    trainer.model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    merged_dir = None
    if cfg.merge_adapter:
        merged_dir = out / MERGED_DIR
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)

    history = list(state.log_history)
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    tokens_seen = int(state.num_input_tokens_seen)
    config = {**cfg.to_dict(), "output_dir": str(out), "target_modules": targets}
    (out / "train_config.json").write_text(
        json.dumps(
            {**config, "base_model_dir": str(base_model_dir), "dataset_path": str(dataset_path),
             "fingerprint": fingerprint},
            indent=1,
        )
    )
    (out / "log_history.json").write_text(json.dumps(history, indent=1))
    png = plot_loss_curve(history, out / "loss_curve.png")
    steps_this_session = state.global_step - resumed_step
    session_tokens = tokens_seen * steps_this_session // max(1, state.global_step)
    result = TrainResult(
        output_dir=str(out),
        adapter_dir=str(adapter_dir),
        merged_dir=str(merged_dir) if merged_dir else None,
        global_step=state.global_step,
        resumed_from=str(resume) if resume else None,
        resumed_step=resumed_step,
        train_loss=_finite(train_loss),
        eval_loss_start=evals[0] if evals else None,
        eval_loss_best=min(evals) if evals else None,
        eval_loss_final=final_eval,
        stopped_early=state.global_step < state.max_steps,
        train_tokens=tokens_seen,
        train_runtime_s=round(runtime, 3),
        tokens_per_second=round(session_tokens / runtime, 1) if runtime > 0 else 0.0,
        trainable_params=trainable,
        total_params=total,
        n_train_examples=len(dsd["train"]),
        n_train_rows=len(train_rows),
        n_dropped_examples=len(dropped) + len(eval_dropped),
        packing=packing,
        target_modules=list(targets) if isinstance(targets, list) else [targets],
        loss_curve_png=str(png) if png else None,
        config=config,
        fingerprint=fingerprint,
        log_history=history,
    )
    (out / "train_result.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    prune_checkpoints(out)
    return result


def _finished_result(out: Path, fingerprint: str, cfg: TrainConfig) -> TrainResult | None:
    """The saved result of this exact run when it already completed (idempotent re-runs)."""
    path = out / "train_result.json"
    if not path.is_file():
        return None
    try:
        done = TrainResult.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    adapter_ok = (Path(done.adapter_dir) / "adapter_config.json").is_file()
    merged_ok = not cfg.merge_adapter or (
        done.merged_dir is not None and (Path(done.merged_dir) / "config.json").is_file()
    )
    if done.fingerprint != fingerprint or not adapter_ok or not merged_ok:
        return None
    done.reused = True
    return done


def _checkpoint_is_final(ckpt: Path) -> bool:
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return int(state.get("global_step", 0)) >= int(state.get("max_steps", 0) or 1 << 62)


def _restore_final(trainer: Any, ckpt: Path) -> float | None:
    """Load the best adapter weights and the trainer state of a finished checkpoint."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))
    best = Path(state.best_model_checkpoint or ckpt)
    if not (best / "adapter_model.safetensors").is_file():
        best = ckpt
    set_peft_model_state_dict(trainer.model, load_file(str(best / "adapter_model.safetensors")))
    trainer.state = state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    return sum(losses) / len(losses) if losses else None


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def plot_loss_curve(history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Train and validation loss against step, as a PNG for MLflow and the Dagster UI."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- perplexity


def inference_device() -> tuple[str, Any]:
    """Where evaluation runs: the training device (a CUDA GPU, in bf16 when it supports it),
    else the CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_model(model_dir: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """Model + tokenizer from a full model folder or a LoRA adapter folder (base from config),
    on ``device`` (default: ``inference_device()``)."""
    from transformers import AutoModelForCausalLM

    auto_device, dtype = inference_device()
    device = device or auto_device
    if device == "cpu":
        import torch

        dtype = torch.float32
    path = Path(model_dir)
    if (path / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.to(device)
    model.eval()
    return model, load_tokenizer(path)


def perplexity(
    model: Any,
    tokenizer: Any = None,
    data: Iterable[Any] = (),
    batch_size: int = 8,
    max_length: int | None = None,
) -> float:
    """exp(mean NLL per scored token), computed identically for base and fine-tuned models.

    ``data`` of instruction examples (dicts or a ``datasets`` split) scores response + EOS
    given the prompt (as training with ``loss_on="response"``); plain strings score every token
    after the first. Examples are scored one by one (padded batches, never packed), so the
    number does not depend on batch composition. ``model`` may be a folder path.
    """
    import torch

    if isinstance(model, str | Path):
        model, loaded_tok = load_model(model)
        tokenizer = tokenizer or loaded_tok
    if tokenizer is None:
        raise ValueError("perplexity: pass a tokenizer with an in-memory model")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = max_length or getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    rows: list[tuple[list[int], list[int]]] = []
    for item in data:
        if isinstance(item, str):
            ids = tokenizer(item, add_special_tokens=False)["input_ids"]
            if tokenizer.bos_token_id is not None:
                ids = [tokenizer.bos_token_id, *ids]
            ids = ids[:limit] if limit else ids
            rows.append((ids, [IGNORE_INDEX, *ids[1:]]))
        else:
            try:
                rows.append(encode_example(tokenizer, item, "response", limit))
            except ExampleTooLong:
                continue  # training drops it too (encode_split): the same tokens are scored
    if not rows:
        raise ValueError("perplexity: no texts or examples given")
    collate = PadCollator(tokenizer.pad_token_id)
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate(
                [{"input_ids": i, "labels": lab, "attention_mask": [1] * len(i)}
                 for i, lab in rows[start : start + batch_size]]
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            shift_logits = logits.logits[:, :-1].float()
            shift_labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            nll += float(loss)
            count += int((shift_labels != IGNORE_INDEX).sum())
    if count == 0:
        raise ValueError("perplexity: no token to score")
    return math.exp(nll / count)


def prune_checkpoints(output_dir: str | Path) -> list[Path]:
    """After a successful run: keep only the last complete checkpoint (it can resume or audit
    the run) and the best one it points to (the weights that were saved), and drop older ones
    and the folders set aside for other configs; returns what was removed. Checkpoints hold
    optimizer state and can be several times the size of the adapter."""
    out = Path(output_dir)
    last = last_complete_checkpoint(out / CHECKPOINT_DIR)
    keep = {last}
    if last is not None:
        best = json.loads((last / "trainer_state.json").read_text()).get("best_model_checkpoint")
        keep.add(Path(best) if best else last)
    removed = [sub for sub in sorted((out / CHECKPOINT_DIR).glob("checkpoint-*"))
               if sub not in keep]
    removed.extend(p for p in out.glob(f"{CHECKPOINT_DIR}-*") if p.is_dir())
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


__all__ = [
    "DEFAULT_TARGET_MODULES",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "encode_example",
    "encode_prompt",
    "encode_split",
    "format_example",
    "last_complete_checkpoint",
    "load_model",
    "perplexity",
    "prompt_parts",
    "prune_checkpoints",
    "train_lora",
    "validate",
]
