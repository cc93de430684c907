"""A vocabulary built from the sentence itself and a seeded model of the tutorial's size.

Without a checkpoint, `explain` shows the matrices of a tiny untrained model (d_model = 4, two
heads), so that every number fits on a screen. The vocabulary holds only the pieces of the given
sentence (and of an optional target sentence), after the fixed special ids of
`transformer_mt.constants`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from transformer_mt.model import Transformer, TransformerConfig

SPECIAL_PIECES = {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"}
LEVELS = ("char", "word")


def split_pieces(text: str, level: str) -> list[str]:
    """Characters (spaces dropped; the default for Chinese) or whitespace-separated words."""
    if level == "char":
        return [c for c in text if not c.isspace()]
    if level == "word":
        return text.split()
    raise ValueError(f"level={level!r}; valid choices: {', '.join(LEVELS)}")


@dataclass(frozen=True)
class Vocabulary:
    """Pieces in id order; ids 0-3 are <pad>, <unk>, <s>, </s>."""

    pieces: tuple[str, ...]
    level: str

    @classmethod
    def from_text(cls, text: str, level: str) -> Vocabulary:
        """Specials, then each distinct piece of `text` in order of first appearance."""
        specials = tuple(SPECIAL_PIECES[i] for i in range(len(SPECIAL_PIECES)))
        seen = dict.fromkeys(p for p in split_pieces(text, level) if p not in specials)
        return cls(specials + tuple(seen), level)

    def ids(self, text: str) -> list[int]:
        """Piece ids of `text` (UNK_ID for a piece outside the vocabulary)."""
        index = {p: i for i, p in enumerate(self.pieces)}
        return [index.get(p, UNK_ID) for p in split_pieces(text, self.level)]


class ToyTokenizer:
    """The part of `transformer_mt.data.Tokenizer` that explain uses, over two `Vocabulary`s."""

    def __init__(self, src: Vocabulary, tgt: Vocabulary) -> None:
        self.src, self.tgt = src, tgt

    @property
    def src_vocab_size(self) -> int:
        return len(self.src.pieces)

    @property
    def tgt_vocab_size(self) -> int:
        return len(self.tgt.pieces)

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source ids: pieces + [EOS_ID], as the SentencePiece tokenizer."""
        return [self.src.ids(line) + [EOS_ID] for line in lines]

    def src_pieces(self, line: str) -> list[str]:
        """The pieces of `encode_src(line)` (unknown ones shown as <unk>), then </s>."""
        return [self.src.pieces[i] for i in self.encode_src([line])[0]]

    def tgt_pieces(self, ids: Iterable[int]) -> list[str]:
        return [self.tgt.pieces[int(i)] for i in ids]

    def decode_tgt(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """Target text: pieces joined (by spaces at word level), specials dropped."""
        sep = " " if self.tgt.level == "word" else ""
        specials = (PAD_ID, BOS_ID, EOS_ID)
        return [
            sep.join(self.tgt.pieces[int(i)] for i in row if int(i) not in specials) for row in ids
        ]


def tiny_model(
    text: str,
    *,
    target_text: str | None = None,
    src_level: str = "char",
    tgt_level: str = "word",
    seed: int = 0,
    **config: Any,
) -> tuple[Transformer, ToyTokenizer]:
    """A seeded, untrained Transformer whose vocabularies are the pieces of `text` (source) and
    of `target_text` (target; None = the source vocabulary, shared), in eval mode.

    `config` holds the other `TransformerConfig` fields (d_model, num_heads, pos_enc, ...).
    """
    src = Vocabulary.from_text(text, src_level)
    tgt = src if target_text is None else Vocabulary.from_text(target_text, tgt_level)
    tokenizer = ToyTokenizer(src, tgt)
    model_config = TransformerConfig(
        src_vocab_size=tokenizer.src_vocab_size, tgt_vocab_size=tokenizer.tgt_vocab_size, **config
    )
    torch.manual_seed(seed)
    return Transformer(model_config).eval(), tokenizer
