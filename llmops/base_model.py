"""The model fine-tuning starts from: a hub id, a local folder, or a tiny model built on the corpus.

Why a self-built tiny model: the embedded defaults must run with no network and no model hub, on
a laptop CPU, in seconds. Training a byte-level BPE tokenizer on the project's own corpus and
briefly pre-training a ~0.5M-parameter Llama/GPT-2 on it gives a real (if weak) language model,
so every later stage (LoRA, perplexity, registry, A/B) exercises the same code as a real one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

INFO_FILE = "llmops_base_model.json"
MIN_PRETRAIN_BLOCK = 32
# Document ids a corpus-trained base model saw (written by the base_model asset; the
# evaluation's leakage check reads it from every registered version built on that base).
PRETRAIN_DOCUMENTS = "pretrain_documents.json"
SPECIAL_TOKENS = {
    "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"
}


class BaseModelError(ValueError):
    """A base model that cannot be used: the message names the source and what to do."""


@dataclass
class BaseModelConfig:
    """Where the base model comes from and, for ``source="tiny"``, how to build it."""

    source: str = "tiny"  # "tiny" | a local folder with config.json | a Hugging Face hub id
    arch: str = "llama"  # tiny only: "llama" | "gpt2"
    vocab_size: int = 2048
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    # The context must hold a RAG prompt (instruction + retrieved context + response): 1024
    # tokens. Pre-training uses shorter packed blocks: more, more varied sequences per step
    # (measured: lower loss after LoRA than 256- or 512-token blocks for the same tokens);
    # RoPE (llama) is relative and fine-tuning on whole examples extends it. gpt2's learned
    # positions beyond block_size start untrained: prefer llama.
    context_length: int = 1024
    block_size: int = 128  # pre-training block (tokens); halved for a tiny corpus
    pretrain_steps: int = 300
    pretrain_batch_size: int = 16
    pretrain_lr: float = 3e-3
    seed: int = 13

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class BaseModelInfo:
    """What later stages need to know about the base model; ``version`` is a weights hash."""

    path: str
    source: str
    arch: str
    n_params: int
    vocab_size: int
    version: str
    max_length: int | None = None
    pretrain_loss_start: float | None = None
    pretrain_loss_end: float | None = None
    pretrain_losses: list[float] = field(default_factory=list)
    pretrain_tokens: int = 0
    pretrain_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseModelInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def weights_hash(model_dir: str | Path) -> str:
    """Content hash of the weight files (16 hex): the same weights give the same version."""
    root = Path(model_dir)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".gguf"}
    )
    if not files:
        raise BaseModelError(f"{root}: no weight files (*.safetensors / *.bin) found")
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Byte-level BPE trained on the corpus: any script (Arabic included) and no unknown bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def _tiny_config(cfg: BaseModelConfig, tokenizer: Any) -> Any:
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if cfg.arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=cfg.n_embd,
            intermediate_size=cfg.n_embd * 8 // 3 // 8 * 8,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head,
            max_position_embeddings=cfg.context_length,
            tie_word_embeddings=True,
            **ids,
        )
    if cfg.arch == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_positions=cfg.context_length,
            tie_word_embeddings=True,
            **ids,
        )
    raise BaseModelError(f"tiny model: unknown arch {cfg.arch!r} (expected 'llama' or 'gpt2')")


def pack_blocks(token_lists: list[list[int]], eos_id: int, block_size: int) -> list[list[int]]:
    """Concatenate sequences separated by EOS and cut into full blocks: no padding is wasted."""
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(eos_id)
    n = len(stream) // block_size
    return [stream[i * block_size : (i + 1) * block_size] for i in range(n)]


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pretrain(model: Any, blocks: list[list[int]], cfg: BaseModelConfig) -> list[float]:
    """Short causal-LM pre-training on packed corpus blocks; returns the per-step loss curve.

    A tight loop rather than ``Trainer``: a few hundred full-parameter steps on a tiny model,
    where Trainer's per-step overhead would dominate and nothing (checkpoints, eval) is needed.
    """
    import torch

    data = torch.tensor(blocks, dtype=torch.long)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.01)
    warmup = max(1, cfg.pretrain_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, cfg.pretrain_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    bs = min(cfg.pretrain_batch_size, len(data))
    for _ in range(cfg.pretrain_steps):
        idx = torch.randint(0, len(data), (bs,), generator=gen)
        batch = data[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
    model.eval()
    return losses


def _mean_loss(model: Any, blocks: list[list[int]], max_blocks: int = 64) -> float:
    import torch

    data = torch.tensor(blocks[:max_blocks], dtype=torch.long)
    with torch.no_grad():
        return float(model(input_ids=data, labels=data).loss)


def build_tiny_model(texts: list[str], out_dir: str | Path, cfg: BaseModelConfig) -> BaseModelInfo:
    """Train a tokenizer and a tiny causal LM on ``texts``, save and reload it, describe it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise BaseModelError("tiny base model: the corpus is empty; ingest documents first")
    started = time.perf_counter()
    _seed_everything(cfg.seed)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    token_lists = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    total = sum(len(t) + 1 for t in token_lists)
    block = cfg.block_size
    while total < 8 * block and block > MIN_PRETRAIN_BLOCK:  # a few documents: shorter blocks
        block //= 2
    blocks = pack_blocks(token_lists, tokenizer.eos_token_id, block)
    if len(blocks) < 2:
        raise BaseModelError(
            f"tiny base model: the corpus has {total} tokens, fewer than two blocks of "
            f"{block}; add documents"
        )
    model_cfg = _tiny_config(cfg, tokenizer)
    model = AutoModelForCausalLM.from_config(model_cfg)
    model.eval()
    loss_start = _mean_loss(model, blocks)
    losses = _pretrain(model, blocks, cfg) if cfg.pretrain_steps > 0 else []
    loss_end = _mean_loss(model, blocks)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # Verify the saved folder is loadable exactly like any other base model would be.
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    probe = torch.tensor(blocks[:1], dtype=torch.long)
    with torch.no_grad():
        same = torch.allclose(model(probe).logits, reloaded(probe).logits, atol=1e-5)
    if not same:
        raise BaseModelError(f"{out}: reloaded tiny model does not reproduce the trained one")
    info = BaseModelInfo(
        path=str(out.resolve()),
        source="tiny",
        arch=model_cfg.model_type,
        n_params=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer),
        version=weights_hash(out),
        max_length=cfg.context_length,
        pretrain_loss_start=round(loss_start, 4),
        pretrain_loss_end=round(loss_end, 4),
        pretrain_losses=losses,
        pretrain_tokens=cfg.pretrain_steps * min(cfg.pretrain_batch_size, len(blocks)) * block,
        pretrain_seconds=round(time.perf_counter() - started, 2),
    )
    (out / INFO_FILE).write_text(json.dumps({"config": cfg.to_dict(), **info.to_dict()}, indent=1))
    return info


def _describe_folder(path: Path, source: str) -> BaseModelInfo:
    """Describe an existing model folder without loading its weights into memory twice."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    n_params = _count_params(path)
    max_len = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    return BaseModelInfo(
        path=str(path.resolve()),
        source=source,
        arch=config.model_type,
        n_params=n_params,
        vocab_size=int(getattr(config, "vocab_size", 0) or 0),
        version=weights_hash(path),
        max_length=int(max_len) if max_len else None,
    )


def _count_params(path: Path) -> int:
    """Parameter count from safetensors headers (cheap); falls back to loading the model."""
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        from safetensors import safe_open

        total = 0
        for shard in shards:
            with safe_open(str(shard), framework="pt") as fh:
                for key in fh.keys():  # noqa: SIM118 - safe_open is not a dict
                    total += math.prod(fh.get_slice(key).get_shape())
        return total
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())


def _tiny_dir_name(cfg: BaseModelConfig, texts: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\0")
    return f"tiny-{cfg.arch}-{digest.hexdigest()[:12]}"


def looks_like_local_path(source: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything path-like is treated as a folder."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or "\\" in source
        or Path(source).expanduser().exists()
    )


def resolve_base_model(
    cfg: BaseModelConfig | str,
    texts: list[str] | None = None,
    out_root: str | Path | None = None,
) -> BaseModelInfo:
    """Turn the configured source into a local model folder and describe it.

    ``tiny`` builds (or reuses, keyed by config + corpus hash) a model under ``out_root``;
    a local path must be a folder with ``config.json``; anything else is a hub id loaded from
    the local Hugging Face cache or the hub, with an error that says how to fix offline use.
    """
    if isinstance(cfg, str):
        cfg = BaseModelConfig(source=cfg)
    source = cfg.source.strip()
    if source == "tiny":
        if texts is None or out_root is None:
            raise BaseModelError("source='tiny' needs the corpus texts and an out_root folder")
        out = Path(out_root) / _tiny_dir_name(cfg, texts)
        info_path = out / INFO_FILE
        if info_path.is_file() and (out / "config.json").is_file():
            info = BaseModelInfo.from_dict(json.loads(info_path.read_text()))
            if weights_hash(out) == info.version:
                return info
        return build_tiny_model(texts, out, cfg)

    if looks_like_local_path(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise BaseModelError(f"base model {source!r}: folder does not exist")
        if not (path / "config.json").is_file():
            raise BaseModelError(
                f"base model {source!r}: no config.json in that folder; expected a folder "
                "written by save_pretrained (config.json, weights, tokenizer files)"
            )
        return _describe_folder(path, source)

    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                          "*.model", "*.tiktoken"])
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache"
            if offline
            else "the hub could not be reached and the model is not in the local cache"
        )
        raise BaseModelError(
            f"base model {source!r}: cannot load hub id ({hint}). Download it once with "
            f"`huggingface-cli download {source}` with network access, or set the trainer's "
            f"base_model to a local folder or to 'tiny'. Cause: {type(exc).__name__}: {exc}"
        ) from exc
    return _describe_folder(Path(local), source)
