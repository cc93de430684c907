"""train.py with model.embeddings.init=word2vec: rows copied, frozen, resumed, misfits refused."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from transformer_mt.constants import BOS_ID, EOS_ID, UNK_ID
from transformer_mt.formats.lightning import load_checkpoint
from transformer_mt.training.embedding_init import EmbeddingInit, split_model_config
from transformer_mt.utils.config_check import ConfigError
from transformer_mt.word2vec import load_pretrained

EMBEDDING = "model.encoder.embedding.weight"


@pytest.fixture(scope="module")
def word2vec_dir(pretrain_word2vec: Callable, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain_word2vec(tmp_path_factory.mktemp("w2v"), 32)


def _w2v(path: Path) -> list[str]:
    return [
        "model.share_embeddings=true",  # the test corpus has one joint vocabulary
        "model.embeddings.init=word2vec",
        f"model.embeddings.path={path}",
        "model.embeddings.match_scale=false",  # the rows are then the matrix's, exactly
    ]


def test_word2vec_rows_start_the_table_and_stay_frozen_for_n_updates(
    train_cfg: Callable, train_entry, word2vec_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train_entry.train(train_cfg(*_w2v(word2vec_dir), "model.embeddings.freeze_steps=3", out=run))
    pretrained = load_pretrained(word2vec_dir / "shared")
    rows = torch.from_numpy(pretrained.covered)
    assert 50 < int(rows.sum()) < len(rows)  # some pieces covered, the specials never
    matrix = torch.from_numpy(pretrained.matrix)
    at_3 = load_checkpoint(run / "checkpoints" / "step_0000003.ckpt")["state_dict"][EMBEDDING]
    at_6 = load_checkpoint(run / "checkpoints" / "step_0000006.ckpt")["state_dict"][EMBEDDING]
    # frozen: after 3 updates the covered rows are still exactly Word2Vec's vectors
    torch.testing.assert_close(at_3[rows], matrix[rows], rtol=0, atol=0)
    # specials and uncovered pieces kept the random N(0, d^-0.5) start (not the zero rows)
    assert at_3[[UNK_ID, BOS_ID, EOS_ID]].abs().sum(dim=1).min() > 0
    assert not torch.equal(at_3[~rows], at_6[~rows])  # and were trained all along
    # unfrozen after update 3: the covered rows move
    assert (at_6[rows] - matrix[rows]).abs().max() > 1e-4


@pytest.mark.parametrize("freeze_steps", [0, 3])
def test_resumed_run_ends_as_one_never_stopped(
    train_cfg: Callable, train_entry, word2vec_dir: Path, tmp_path: Path, freeze_steps: int
) -> None:
    """Stopped at update 2 and resumed to 4. Without a freeze the covered rows have moved by
    update 2, so copying Word2Vec again on resume would show; with a 3-update freeze, update 3
    after the resume must still leave them alone."""
    # checkpoints (and the stop) at a validation, as in the other resume tests
    common = [*_w2v(word2vec_dir), f"model.embeddings.freeze_steps={freeze_steps}", "test=false",
              "trainer.val_check_interval=2"]  # fmt: skip
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    train_entry.train(train_cfg(*common, "trainer.max_steps=4", out=full))
    train_entry.train(train_cfg(*common, "trainer.max_steps=2", out=part))
    last = part / "checkpoints" / "last.ckpt"
    train_entry.train(train_cfg(*common, "trainer.max_steps=4", f"ckpt_path={last}", out=resumed))
    want = load_checkpoint(full / "checkpoints" / "last.ckpt")["state_dict"]
    got = load_checkpoint(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    for name, value in got.items():
        torch.testing.assert_close(value, want[name], rtol=0, atol=0, msg=name)


def test_match_scale_gives_the_rows_the_rms_of_the_random_init(
    train_cfg: Callable, train_entry, word2vec_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    overrides = [*_w2v(word2vec_dir)[:-1], "model.embeddings.freeze_steps=3", "trainer.max_steps=3"]
    train_entry.train(train_cfg(*overrides, "test=false", out=run))
    pretrained = load_pretrained(word2vec_dir / "shared")
    rows = torch.from_numpy(pretrained.covered)
    table = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"][EMBEDDING][rows]
    d_model = table.shape[1]
    rms = table.pow(2).mean().sqrt().item()
    assert rms == pytest.approx(d_model**-0.5, rel=0.1)  # the N(0, d^-0.5) scale
    # same directions as Word2Vec's vectors: one common positive factor
    ratio = table / torch.from_numpy(pretrained.matrix)[rows]
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_a_matrix_of_another_size_fails_naming_the_file(
    train_cfg: Callable, train_entry, pretrain_word2vec: Callable, tmp_path: Path
) -> None:
    wrong = pretrain_word2vec(tmp_path / "w2v16", 16)
    with pytest.raises(ValueError, match=r"shared\.json: vectors have size 16 but d_model=32"):
        train_entry.train(train_cfg(*_w2v(wrong), out=tmp_path / "run"))


def test_a_matrix_of_another_tokenizer_fails(
    train_cfg: Callable, train_entry, word2vec_dir: Path, tmp_path: Path
) -> None:
    """Same shape, but recorded as built with other SentencePiece models: refused."""
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("shared.npy", "shared.json"):
        shutil.copy(word2vec_dir / name, fake / name)
    meta = fake / "shared.json"
    meta.write_text(meta.read_text().replace('"tokenizer": "', '"tokenizer": "0123'))
    with pytest.raises(ValueError, match="trained with SentencePiece models 0123"):
        train_entry.train(train_cfg(*_w2v(fake), out=tmp_path / "run"))


def test_embedding_settings_are_checked_at_start(train_entry, train_cfg: Callable) -> None:
    with pytest.raises(ConfigError, match=r"model\.embeddings\.pth: unknown key .*'path'"):
        train_entry.check(train_cfg("+model.embeddings.pth=x"))
    with pytest.raises(ValueError, match="init='glove': expected one of random, word2vec"):
        train_entry.check(train_cfg("model.embeddings.init=glove"))
    with pytest.raises(ValueError, match="needs model.embeddings.path"):
        EmbeddingInit(init="word2vec")
    with pytest.raises(ValueError, match="freeze_steps needs init=word2vec"):
        EmbeddingInit(freeze_steps=5)
    fields, init = split_model_config({"d_model": 8, "embeddings": {"init": "random"}})
    assert fields == {"d_model": 8} and init == EmbeddingInit()
