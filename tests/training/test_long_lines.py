"""A learned position table and lines longer than it: validation clips them (named in a
warning) instead of crashing the run; a table shorter than max_len is refused at start."""

import logging

import pytest
import torch

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.batching import Batch, clip_to_positions
from transformer_mt.data.synthetic import synthetic_pairs
from transformer_mt.utils.config_check import ConfigError
from transformer_mt.utils.errors import StartupError

from .conftest import compose_config


def test_clip_to_positions_keeps_eos_and_names_the_cut_lines():
    src = torch.tensor([[5, 6, 7, 8, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    tgt_out = torch.tensor([[5, 6, EOS_ID], [5, 6, 7]])
    tgt_in = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 5, 6]])
    batch = Batch(src, tgt_in, tgt_out, torch.tensor([10, 11]), 6)
    clipped, cut = clip_to_positions(batch, 3)
    assert cut == [10]
    assert clipped.src_ids.tolist() == [[5, 6, EOS_ID], [5, EOS_ID, PAD_ID]]
    assert clipped.tgt_out_ids.tolist() == tgt_out.tolist() and clipped.num_tgt_tokens == 6
    same, none_cut = clip_to_positions(batch, 5)
    assert same is batch and none_cut == []


@pytest.fixture
def files(tmp_path):
    """Synthetic pairs; the val split gets one line six sentences long."""
    pairs = {"train": synthetic_pairs(300, 0), "val": synthetic_pairs(10, 1)}
    long_src = " ".join(s for s, _ in synthetic_pairs(6, 9))
    long_tgt = " ".join(t for _, t in synthetic_pairs(6, 9))
    pairs["val"][3] = (long_src, long_tgt)
    out = {}
    for split, rows in pairs.items():
        for side, index in (("src", 0), ("tgt", 1)):
            path = tmp_path / f"{split}.{side}"
            path.write_text("".join(r[index] + "\n" for r in rows), encoding="utf-8")
            out[f"{split}_{side}"] = path
    return out


def overrides(files, tmp_path, *extra):
    return [
        "data=custom", *(f"data.corpus.{k}={v}" for k, v in files.items()),
        "data.tokenizer.vocab_size=100", "data.max_tokens=600", "data.max_len=40",
        "data.num_workers=0", "model=tiny", "model.d_model=32", "model.d_ff=64",
        "model.num_heads=2", "model.num_encoder_layers=1", "model.num_decoder_layers=1",
        "pos_enc=learned", "model.max_positions=48", "decoding.max_len_a=1.2",
        "decoding.max_len_b=10", "trainer.max_steps=2", "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0", "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        "logger=csv", "test=false", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.output_dir={tmp_path / 'run'}", *extra,
    ]  # fmt: skip


def test_validation_clips_a_line_longer_than_learned_positions(
    train_entry, files, tmp_path, caplog
):
    with caplog.at_level(logging.WARNING):
        metrics = train_entry.train(compose_config("train", overrides(files, tmp_path)))
    assert "val/bleu" in metrics and "val/loss" in metrics  # the run validated every line
    assert "val lines [3] are longer than the model's 48 positions" in caplog.text


def test_a_learned_table_below_max_len_is_refused_at_start(train_entry, files, tmp_path):
    cfg = compose_config("train", overrides(files, tmp_path, "model.max_positions=30"))
    with pytest.raises(ConfigError, match="model.max_positions=30 is below data.max_len=40"):
        train_entry.train(cfg)
    assert not (tmp_path / "cache").exists()  # refused before any data was prepared


def test_resume_refuses_a_data_module_with_another_tokenizer(train_entry, files, tmp_path):
    run = tmp_path / "run"
    train_entry.train(compose_config("train", overrides(files, tmp_path)))
    last = run / "checkpoints" / "last.ckpt"
    resume = overrides(files, tmp_path, f"ckpt_path={last}", "trainer.max_steps=4",
                       "data.tokenizer.vocab_size=90")  # fmt: skip
    with pytest.raises(ValueError, match=r"another tokenizer \(sha256 [0-9a-f]{12}\) than the "
                       r"data module's \([0-9a-f]{12}\)"):  # fmt: skip
        train_entry.train(compose_config("train", resume))
    same = overrides(files, tmp_path, f"ckpt_path={last}", "trainer.max_steps=4")
    assert "val/bleu" in train_entry.train(compose_config("train", same))  # same data: resumes


def test_devices_the_machine_lacks_are_refused_at_start(train_entry, files, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = compose_config("train", overrides(files, tmp_path, "trainer=gpu"))
    with pytest.raises(StartupError, match="no CUDA GPU: train on the CPU with trainer=default"):
        train_entry.train(cfg)
    cfg = compose_config("train", overrides(files, tmp_path, "trainer.devices=4096"))
    with pytest.raises(StartupError, match=r"trainer.devices=4096 but this machine has \d+ CPU"):
        train_entry.train(cfg)
    assert not (tmp_path / "cache").exists()
