"""Tokenizer: fixed special ids, encode/decode contract, checkpoint state, cache by hash."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import sentencepiece as spm

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from transformer_mt.data import vocab
from transformer_mt.data.corpus import TextPairSource, TsvSource
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig
from transformer_mt.data.vocab import load_or_train_tokenizer

from .conftest import SMALL_VOCAB, write_lines


def test_special_pieces_have_the_fixed_ids(small_tokenizer: Tokenizer):
    pieces = small_tokenizer.tgt_pieces([PAD_ID, UNK_ID, BOS_ID, EOS_ID])
    assert pieces == ["<pad>", "<unk>", "<s>", "</s>"]
    assert small_tokenizer.joint and small_tokenizer.src_vocab_size == SMALL_VOCAB.vocab_size


def test_encode_contract_and_detokenized_decode(small_tokenizer: Tokenizer, slice_files):
    lines = slice_files["val.en"].read_text().split("\n")[:50]
    src = small_tokenizer.encode_src(lines)
    tgt = small_tokenizer.encode_tgt(lines)
    assert all(s == t + [EOS_ID] for s, t in zip(src, tgt, strict=True))
    assert all(EOS_ID not in t and BOS_ID not in t and PAD_ID not in t for t in tgt)
    # specials around the pieces are dropped; text comes back as SentencePiece normalizes it
    padded = [[BOS_ID, *t, EOS_ID, PAD_ID, PAD_ID] for t in tgt]
    assert small_tokenizer.decode_tgt(padded) == [" ".join(line.split()) for line in lines]


def test_src_pieces_match_ids(small_tokenizer: Tokenizer):
    line = "Two young guys are outside."
    pieces = small_tokenizer.src_pieces(line)
    assert pieces[-1] == "</s>"
    assert small_tokenizer.tgt_pieces(small_tokenizer.encode_src([line])[0]) == pieces


def test_state_round_trip_rebuilds_the_same_tokenizer(small_tokenizer: Tokenizer):
    state = pickle.loads(pickle.dumps(small_tokenizer.to_state()))  # as a checkpoint would
    again = Tokenizer.from_state(state)
    lines = ["A man in a blue shirt.", "Ein Mann mit einem Hut."]
    assert again.encode_src(lines) == small_tokenizer.encode_src(lines)
    assert again.fingerprint() == small_tokenizer.fingerprint()


def test_model_with_other_special_ids_is_rejected(slice_files, tmp_path: Path):
    spm.SentencePieceTrainer.train(
        input=str(slice_files["train.en"]),
        model_prefix=str(tmp_path / "m"),
        vocab_size=100,
        minloglevel=2,
    )  # fmt: skip  (SentencePiece defaults: unk 0, bos 1, eos 2, no pad)
    with pytest.raises(ValueError, match="expected 0/1/2/3"):
        Tokenizer((tmp_path / "m.model").read_bytes())


def test_cache_reuses_and_retrains_on_change(slice_files, tmp_path: Path, monkeypatch):
    calls = []
    real = vocab.train_sentencepiece
    monkeypatch.setattr(
        vocab, "train_sentencepiece", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    lines = slice_files["train.de"].read_text().split("\n")[:500]
    source = TextPairSource(write_lines(tmp_path / "a", lines), write_lines(tmp_path / "b", lines))
    config = TokenizerConfig(vocab_size=150)
    first = load_or_train_tokenizer(source, config, tmp_path / "cache")
    second = load_or_train_tokenizer(source, config, tmp_path / "cache")
    assert len(calls) == 1 and second.fingerprint() == first.fingerprint()
    load_or_train_tokenizer(source, TokenizerConfig(vocab_size=160), tmp_path / "cache")
    assert len(calls) == 2  # a changed setting retrains
    write_lines(tmp_path / "a", lines[:-1] + ["changed corpus"])
    load_or_train_tokenizer(source, config, tmp_path / "cache")
    assert len(calls) == 3  # changed content retrains
    assert len(list((tmp_path / "cache" / "tokenizers").iterdir())) == 3


def test_separate_vocabularies_for_chinese(shared_data: Path, tmp_path: Path):
    lines = (shared_data / "tatoeba-cmn-eng" / "train.tsv").read_text("utf-8").split("\n")[:3000]
    source = TsvSource(write_lines(tmp_path / "t.tsv", lines), src_column=1, tgt_column=0)
    config = TokenizerConfig(
        vocab_size=1500, joint=False, character_coverage=0.9995, tgt_vocab_size=300,
        tgt_character_coverage=1.0,
    )  # fmt: skip
    tok = load_or_train_tokenizer(source, config, tmp_path / "cache")
    assert not tok.joint and (tok.src_vocab_size, tok.tgt_vocab_size) == (1500, 300)
    pieces = tok.src_pieces("我很冷。")  # no pre-segmentation: pieces cover the characters
    assert "".join(pieces[:-1]).replace("▁", "") == "我很冷。"


def test_config_validation_lists_choices():
    with pytest.raises(ValueError, match="valid: unigram, bpe"):
        TokenizerConfig(model_type="wordpiece")
    with pytest.raises(ValueError, match="need joint=false"):
        TokenizerConfig(tgt_vocab_size=100)
