"""From a contract tokenizer and real lines to matrices whose rows line up with the token ids."""

import gzip
import io
import itertools
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from rich.console import Console

from transformer_mt.word2vec import (
    Word2VecSettings,
    explain_toy,
    load_pretrained,
    pretrain_embeddings,
)
from transformer_mt.word2vec.pipeline import PieceCorpus

ROOT = Path(__file__).resolve().parents[2]
MIN_COUNT = 3


class ContractTokenizer:
    """The data contract's Tokenizer methods over SentencePiece models (ids 0-3 = specials)."""

    def __init__(self, src: spm.SentencePieceProcessor, tgt: spm.SentencePieceProcessor | None):
        self.joint = tgt is None
        self._src, self._tgt = src, tgt or src
        self.src_vocab_size, self.tgt_vocab_size = src.get_piece_size(), self._tgt.get_piece_size()

    def encode_src(self, lines):
        return self._src.encode(lines, out_type=int, add_eos=True)

    def encode_tgt(self, lines):
        return self._tgt.encode(lines, out_type=int)

    def src_pieces(self, line):
        return self._src.encode(line, out_type=str, add_eos=True)

    def tgt_pieces(self, ids):
        return [self._tgt.id_to_piece(int(i)) for i in ids]


def sentencepiece(lines: list[str], vocab_size: int) -> spm.SentencePieceProcessor:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2, num_threads=1,
    )  # fmt: skip
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


@pytest.fixture(scope="module")
def lines(shared_data) -> tuple[list[str], list[str]]:
    def read(lang: str) -> list[str]:
        path = shared_data / "multi30k" / f"train.{lang}.gz"
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [line.strip() for line in itertools.islice(f, 1000)]

    return read("de"), read("en")


SETTINGS = Word2VecSettings(skip_gram=True, vector_size=16, window=3, min_count=MIN_COUNT, epochs=2)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_joint_vocabulary(tmp_path, lines) -> None:
    src, tgt = lines
    sp = sentencepiece(src + tgt, 500)
    reports = pretrain_embeddings(
        ContractTokenizer(sp, None), src, tgt, SETTINGS, tmp_path, ["dog", "Hund"]
    )
    emb = load_pretrained(tmp_path / "shared")
    assert emb.matrix.shape == (500, 16)
    # covered = exactly the non-special ids seen >= MIN_COUNT times, counted independently
    counts = Counter(i for seq in sp.encode(src + tgt) for i in seq)
    expected = [i >= 4 and counts[i] >= MIN_COUNT for i in range(500)]
    assert emb.covered.tolist() == expected
    # gensim's neighbours (by piece) agree with the cosine of the rows of those pieces' ids
    (report,) = reports
    assert [n["probe"] for n in report["neighbours"]] == ["dog", "Hund"]
    for probe in report["neighbours"]:
        row = emb.matrix[sp.piece_to_id(probe["piece"])]
        for piece, sim in probe["neighbours"]:
            assert cosine(row, emb.matrix[sp.piece_to_id(piece)]) == pytest.approx(sim, abs=1e-5)
    assert report["coverage"]["covered_rows"] == sum(expected)
    assert report["throughput"]["words_per_second"] > 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["settings"]["vector_size"] == 16 and len(saved["matrices"]) == 1
    assert "nearest to '▁dog'" in (tmp_path / "report.txt").read_text()


def test_separate_vocabularies(tmp_path, lines) -> None:
    src, tgt = lines
    tok = ContractTokenizer(sentencepiece(src, 300), sentencepiece(tgt, 250))
    pretrain_embeddings(tok, src, tgt, SETTINGS, tmp_path)
    assert load_pretrained(tmp_path / "src").matrix.shape == (300, 16)
    assert load_pretrained(tmp_path / "tgt").matrix.shape == (250, 16)


def test_misaligned_pieces_name_the_line() -> None:
    corpus = PieceCorpus([], {}, 10)
    with pytest.raises(ValueError, match=r"source train, line 2: 3 ids but 2 pieces"):
        corpus.add([[5, 3], [6, 7, 3]], [["▁a", "</s>"], ["▁b", "</s>"]], "source train")
    with pytest.raises(ValueError, match=r"line 1: id 5 is '▁b' here but '▁a' on an earlier line"):
        corpus.add([[5]], [["▁b"]], "target train")


def test_embeddings_group_composes() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("pretrain_embeddings", overrides=["embeddings=cbow", "d_model=64", "seed=7"])
    settings = instantiate(cfg.embeddings)
    assert settings == Word2VecSettings(
        skip_gram=False, vector_size=64, window=5, epochs=10, seed=7
    )


def expected_toy_loss() -> float:
    """Centre 喜欢, contexts 我 (u·v = 0.26) and 小狗 (0.22), negative 吃 (-0.08) for each."""
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    return -sum(log_sigmoid(s) + log_sigmoid(0.08) for s in (0.26, 0.22))


def test_explain_toy_printout() -> None:
    console = Console(record=True, width=160)
    explain_toy(console, skip_gram=True)
    out = console.export_text()
    assert f"total loss L = {expected_toy_loss():.4f}" in out
    assert all(word in out for word in ("我", "喜欢", "小狗", "吃", "饭"))


@pytest.mark.slow
def test_entry_point_explain(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["explain=true", f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "pretrain_embeddings.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert f"total loss L = {expected_toy_loss():.4f}" in out


@pytest.mark.parametrize("data", ["multi30k_de_en", "tatoeba_zh_en"])
def test_entry_point_config_resolves_with_a_data_config(data: str, monkeypatch) -> None:
    """The data configs interpolate `paths.*`, so the entry point must compose that group."""
    monkeypatch.setenv("TRANSFORMER_MT_DATA", "/data/root")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("pretrain_embeddings", overrides=[f"data={data}"], return_hydra_config=True)
    HydraConfig().set_config(cfg)  # as a real run, so ${hydra:...} defaults resolve
    assert cfg.data.data_root == "/data/root"
