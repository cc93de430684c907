"""SentencePiece vocabularies with the project's fixed special ids, trained once and cached.

Ids (ARCHITECTURE.md): <pad> 0, <unk> 1, <s> 2, </s> 3, set in the SentencePiece model itself
so that every id the model sees is the id SentencePiece encodes. Source sequences end with
</s>; target sequences are stored as pieces only and the batcher adds <s> and </s>.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe")
SPECIAL_IDS = frozenset((PAD_ID, BOS_ID, EOS_ID))
_STATE_VERSION = 1


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings; any change gives a new cache key, hence a retrained model."""

    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000  # joint vocabulary, or the source one when joint=False
    joint: bool = True  # one vocabulary for both languages (allows shared embeddings)
    character_coverage: float = 1.0  # 0.9995 suits Chinese/Japanese
    tgt_vocab_size: int | None = None  # only when joint=False; default vocab_size
    tgt_character_coverage: float | None = None  # only when joint=False
    input_sentence_size: int = 2_000_000  # sentences sampled for training (0 = all)
    seed: int = 1  # SentencePiece's sampling seed

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type={self.model_type!r}; valid: {', '.join(MODEL_TYPES)}")
        if self.vocab_size < 8:
            raise ValueError(f"vocab_size={self.vocab_size} must be at least 8")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage={self.character_coverage} must be in (0, 1]")
        if self.joint and (self.tgt_vocab_size or self.tgt_character_coverage):
            raise ValueError("tgt_vocab_size/tgt_character_coverage need joint=false")

    def side(self, tgt: bool) -> tuple[int, float]:
        """(vocab_size, character_coverage) for one side."""
        if tgt:
            return (
                self.tgt_vocab_size or self.vocab_size,
                self.tgt_character_coverage or self.character_coverage,
            )
        return self.vocab_size, self.character_coverage


def _check_ids(processor: spm.SentencePieceProcessor) -> spm.SentencePieceProcessor:
    ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise ValueError(f"SentencePiece model has pad/unk/bos/eos ids {ids}, expected 0/1/2/3")
    return processor


def _load(proto: bytes) -> spm.SentencePieceProcessor:
    return _check_ids(spm.SentencePieceProcessor(model_proto=proto))


class Tokenizer:
    """Source and target SentencePiece models (the same one when `joint`)."""

    def __init__(self, src_proto: bytes, tgt_proto: bytes | None = None, num_threads: int = 0):
        self.joint = tgt_proto is None
        self._protos = (src_proto, tgt_proto)
        self._src = _load(src_proto)
        self._tgt = self._src if tgt_proto is None else _load(tgt_proto)
        self.num_threads = num_threads or (os.cpu_count() or 1)

    @property
    def src_vocab_size(self) -> int:
        return self._src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self._tgt.get_piece_size()

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source ids: pieces + [EOS_ID]."""
        return self._src.encode(lines, out_type=int, add_eos=True, num_threads=self.num_threads)

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target ids: pieces only (the batcher adds BOS/EOS)."""
        return self._tgt.encode(lines, out_type=int, num_threads=self.num_threads)

    def decode_tgt(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """Detokenized target text (for sacrebleu); <pad>, <s> and </s> are dropped."""
        return self._tgt.decode([[int(i) for i in seq if int(i) not in SPECIAL_IDS] for seq in ids])

    def src_pieces(self, line: str) -> list[str]:
        """The pieces of `encode_src(line)`, including the final </s>."""
        return self._src.encode(line, out_type=str, add_eos=True)

    def tgt_pieces(self, ids: Iterable[int]) -> list[str]:
        return [self._tgt.id_to_piece(int(i)) for i in ids]

    def src_vocabulary(self) -> list[str]:
        """Source piece strings in id order (pieces are unique: piece i <-> id i)."""
        return [self._src.id_to_piece(i) for i in range(self.src_vocab_size)]

    def tgt_vocabulary(self) -> list[str]:
        """Target piece strings in id order."""
        return [self._tgt.id_to_piece(i) for i in range(self.tgt_vocab_size)]

    def fingerprint(self) -> str:
        """sha256 of the models: prepared arrays are only valid for these exact models."""
        digest = hashlib.sha256()
        for proto in self._protos:
            digest.update(proto or b"")
        return digest.hexdigest()

    def to_state(self) -> dict:
        """Serialized SentencePiece protos, enough to rebuild this tokenizer from a checkpoint."""
        return {
            "version": _STATE_VERSION,
            "src_model": self._protos[0],
            "tgt_model": self._protos[1],
        }

    @classmethod
    def from_state(cls, state: dict) -> Tokenizer:
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"tokenizer state version {state.get('version')}, expected {_STATE_VERSION}"
            )
        return cls(state["src_model"], state["tgt_model"])

    def save(self, folder: Path) -> None:
        """Write `src.model` (and `tgt.model` when separate) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "src.model").write_bytes(self._protos[0])
        if self._protos[1] is not None:
            (folder / "tgt.model").write_bytes(self._protos[1])

    @classmethod
    def load(cls, folder: Path) -> Tokenizer:
        tgt = folder / "tgt.model"
        return cls((folder / "src.model").read_bytes(), tgt.read_bytes() if tgt.is_file() else None)


def train_sentencepiece(
    sentences: Iterator[str], vocab_size: int, coverage: float, config: TokenizerConfig
) -> bytes:
    """Train one SentencePiece model on `sentences` and return its serialized proto."""
    proto = io.BytesIO()
    spm.set_random_generator_seed(config.seed)  # sentence sampling is seeded, hence repeatable
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=proto,
            model_type=config.model_type,
            vocab_size=vocab_size,
            character_coverage=coverage,
            input_sentence_size=config.input_sentence_size,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=1_000_000,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )  # fmt: skip
    except RuntimeError as err:
        raise ValueError(
            f"SentencePiece training failed (vocab_size={vocab_size}, "
            f"model_type={config.model_type}): {err}"
        ) from None
    return proto.getvalue()
