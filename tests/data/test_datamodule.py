"""The DataModule end to end on slices, the Hydra data configs, and Lightning's epoch hook."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from transformer_mt.data.corpus import Multi30k, TextCorpus, TsvCorpus
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.data.readers import CorpusError

from .conftest import SMALL_VOCAB

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture
def module(slice_files, session_cache: Path, small_tokenizer) -> TranslationDataModule:
    corpus = TextCorpus(
        slice_files["train.de"], slice_files["train.en"], slice_files["val.de"],
        slice_files["val.en"], src_lang="de", tgt_lang="en",
    )  # fmt: skip
    dm = TranslationDataModule(
        corpus, SMALL_VOCAB, cache_dir=session_cache, max_tokens=600, max_len=40,
        num_workers=0,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_val_batches_map_back_to_references(module: TranslationDataModule):
    refs, srcs = module.references("val"), module.sources("val")
    seen = []
    for batch in module.val_dataloader():
        assert batch.src_ids.dtype == torch.long and (batch.src_ids[:, 0] != 0).all()
        hyps = module.tokenizer.decode_tgt(batch.tgt_out_ids.tolist())
        for i, hyp in zip(batch.indices.tolist(), hyps, strict=True):
            assert hyp == " ".join(refs[i].split())  # index i is line i of the split
        seen += batch.indices.tolist()
        expected_src = module.tokenizer.encode_src([srcs[i] for i in batch.indices.tolist()])
        for row, ids in zip(batch.src_ids.tolist(), expected_src, strict=True):
            assert row[: len(ids)] == ids and set(row[len(ids) :]) <= {0}
    assert sorted(seen) == list(range(len(refs)))


def test_too_long_training_pairs_are_counted_and_logged(module, caplog):
    with caplog.at_level(logging.WARNING):
        batches = list(module.train_dataloader())
    src_len, tgt_len = module.splits["train"].lengths()
    too_long = int(((src_len > 40) | (tgt_len > 40)).sum())
    assert too_long > 0 and module.filtered_too_long == too_long
    assert f"{too_long} of 2000 pairs longer than max_len=40" in caplog.text
    assert sum(len(b) for b in batches) == 2000 - too_long
    assert all(b.src_ids.shape[1] <= 40 and b.tgt_out_ids.shape[1] <= 40 for b in batches)


def test_second_module_reuses_the_cache(module, slice_files, caplog):
    with caplog.at_level(logging.INFO):
        again = TranslationDataModule(
            module.corpus, SMALL_VOCAB, cache_dir=module.cache_dir, num_workers=0
        )
        again.setup()
    assert "reusing SentencePiece" in caplog.text and "preparing" not in caplog.text
    assert "training SentencePiece" not in caplog.text
    assert again.splits["train"].folder == module.splits["train"].folder


def test_missing_test_split_is_reported(module):
    assert module.has_split("val") and not module.has_split("test")
    with pytest.raises(CorpusError, match="no test split"):
        module.test_dataloader()


class _Recorder(L.LightningModule):
    """Records the epoch and pair indices of each training step (no model)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.steps: list[tuple[int, list[int]]] = []

    def training_step(self, batch, batch_idx):
        self.steps.append((self.current_epoch, batch.indices.tolist()))
        return (self.weight * 0).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(
        limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, use_distributed_sampler=False,
        accelerator="cpu", **{"enable_checkpointing": False, **kwargs},
    )  # fmt: skip


def test_lightning_sets_the_epoch_on_our_sampler(module, tmp_path: Path):
    recorder = _Recorder()
    _trainer(tmp_path, max_epochs=2).fit(recorder, datamodule=module)
    first, second = ([i for e, b in recorder.steps if e == epoch for i in b] for epoch in (0, 1))
    assert first != second and sorted(first) == sorted(second)


def test_lightning_resumes_mid_epoch_with_the_remaining_batches(module, tmp_path: Path):
    """Workers prefetch batches ahead of the loop; the checkpoint counts only those trained on."""
    module.num_workers = 2
    full = _Recorder()
    _trainer(tmp_path, max_epochs=2).fit(full, datamodule=module)
    steps_per_epoch = len(full.steps) // 2
    half = steps_per_epoch // 2
    every = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=half)
    part = _Recorder()
    _trainer(tmp_path, max_steps=half, callbacks=[every], enable_checkpointing=True).fit(
        part, datamodule=module
    )
    resumed = _Recorder()
    (checkpoint,) = (tmp_path / "ckpt").glob("*.ckpt")
    _trainer(tmp_path, max_epochs=2).fit(resumed, datamodule=module, ckpt_path=checkpoint)
    assert len(part.steps) == half and part.steps + resumed.steps == full.steps


@pytest.mark.parametrize(
    ("name", "corpus_type", "direction"),
    [
        ("multi30k", Multi30k, ("de", "en")),
        ("multi30k_en_de", Multi30k, ("en", "de")),
        ("multi30k_fr_en", Multi30k, ("fr", "en")),
        ("tatoeba_zh_en", TsvCorpus, ("zh", "en")),
        ("tatoeba_en_zh", TsvCorpus, ("en", "zh")),
    ],
)
def test_data_configs_instantiate(shared_data: Path, name, corpus_type, direction, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=[f"+data={name}", f"+paths.data_dir={shared_data}"])
    dm = hydra.utils.instantiate(cfg.data, cache_dir=str(tmp_path))
    assert isinstance(dm, TranslationDataModule) and isinstance(dm.corpus, corpus_type)
    assert (dm.corpus.src_lang, dm.corpus.tgt_lang) == direction
    train = dm.corpus.source("train")
    assert all(path.is_file() for path in train.files)


def test_custom_config_takes_paths_from_the_command_line(slice_files, session_cache: Path):
    paths = [f"+data.corpus.{k}={slice_files[f]}" for k, f in (
        ("train_src", "train.de"), ("train_tgt", "train.en"),
        ("val_src", "val.de"), ("val_tgt", "val.en"),
    )]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+data=custom", *[p.replace("+", "", 1) for p in paths]])
    dm = hydra.utils.instantiate(
        cfg.data, cache_dir=str(session_cache), tokenizer={"vocab_size": 300}, num_workers=0
    )
    dm.setup()
    assert len(dm.splits["train"]) == 2000 and dm.tokenizer.src_vocab_size == 300
