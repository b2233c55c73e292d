"""Base model: the tiny corpus-trained model, local folders, hub ids and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.base_model import (
    INFO_FILE,
    BaseModelConfig,
    BaseModelError,
    BaseModelInfo,
    build_tiny_model,
    resolve_base_model,
    weights_hash,
)
from tests.training_data import BUILTIN_TEXT, TEST_BASE, corpus_texts, shared_tiny_base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> BaseModelInfo:
    return shared_tiny_base(tmp_path_factory.getbasetemp())


def test_tiny_model_is_a_small_real_language_model(tiny: BaseModelInfo) -> None:
    assert tiny.source == "tiny" and tiny.arch == "llama"
    assert 300_000 <= tiny.n_params <= 1_500_000, tiny.n_params
    assert 1000 <= tiny.vocab_size <= TEST_BASE["vocab_size"]
    # Random init sits near ln(vocab) ~ 7.6; pre-training on the corpus must cut it clearly.
    assert tiny.pretrain_loss_start > 7.0
    assert tiny.pretrain_loss_end < tiny.pretrain_loss_start - 1.5, (
        tiny.pretrain_loss_start, tiny.pretrain_loss_end)
    assert len(tiny.pretrain_losses) == TEST_BASE["pretrain_steps"]
    assert tiny.version == weights_hash(tiny.path)


def test_tiny_model_reloads_with_from_pretrained(tiny: BaseModelInfo) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.path)
    model = AutoModelForCausalLM.from_pretrained(tiny.path)
    assert {tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token} == {
        "<pad>", "<s>", "</s>", "<unk>"}
    for text in ("The reservoir fell to 42% of capacity.", "اسمي سلطان، من اين انت؟"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text  # byte-level BPE: lossless, Arabic included
    text = BUILTIN_TEXT.splitlines()[0] + " " + BUILTIN_TEXT.splitlines()[1]
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    assert out.logits.shape[-1] == tiny.vocab_size
    # In-corpus text is far more likely than under a random init (loss ~ ln(vocab)).
    assert float(out.loss) < tiny.pretrain_loss_start - 1.0, float(out.loss)


def test_resolve_tiny_reuses_the_built_model(
    tiny: BaseModelInfo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    weights = Path(tiny.path) / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = shared_tiny_base(tmp_path_factory.getbasetemp())
    assert again.to_dict() == tiny.to_dict()
    assert weights.stat().st_mtime_ns == mtime  # not rebuilt
    saved = json.loads((Path(tiny.path) / INFO_FILE).read_text())
    assert saved["config"]["pretrain_steps"] == TEST_BASE["pretrain_steps"]


def test_gpt2_architecture_builds(tmp_path: Path) -> None:
    cfg = BaseModelConfig(arch="gpt2", vocab_size=1024, n_embd=64, n_layer=1, n_head=2,
                          block_size=64, pretrain_steps=5)
    info = build_tiny_model(corpus_texts()[:5], tmp_path / "gpt2", cfg)
    assert info.arch == "gpt2" and info.n_params > 0
    assert (tmp_path / "gpt2" / "config.json").is_file()


def test_local_folder_is_described_without_rebuilding(tiny: BaseModelInfo) -> None:
    info = resolve_base_model(tiny.path)
    assert info.path == tiny.path
    assert info.arch == "llama"
    assert info.n_params == tiny.n_params
    assert info.version == tiny.version
    assert info.max_length == BaseModelConfig().context_length


def test_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="does not exist"):
        resolve_base_model(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match=r"no config\.json"):
        resolve_base_model(str(tmp_path / "empty"))


def test_hub_id_offline_names_the_id_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BaseModelError) as err:
        resolve_base_model("llmops-test-org/surely-not-cached-model")
    msg = str(err.value)
    assert "llmops-test-org/surely-not-cached-model" in msg
    assert "HF_HUB_OFFLINE" in msg and "tiny" in msg


def test_tiny_needs_a_corpus(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="corpus is empty"):
        resolve_base_model(BaseModelConfig(), texts=["", "  "], out_root=tmp_path)
    with pytest.raises(BaseModelError, match="fewer than two blocks"):
        resolve_base_model(BaseModelConfig(vocab_size=300), texts=["a tiny text"],
                           out_root=tmp_path)
