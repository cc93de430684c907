"""Batching raw lines for translation: token budget, padding, input order restored."""

from dataclasses import dataclass

import torch
from torch import nn

from transformer_mt.constants import EOS_ID, PAD_ID
from transformer_mt.training.translate import (
    best_tokens,
    pad_batch,
    token_budget_batches,
    translate_lines,
)


@dataclass
class _Hyp:
    tokens: list[int]


class _CharTokenizer:
    """ids = code points + 10 (so they never collide with specials); EOS appended."""

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        return [[ord(c) + 10 for c in line] + [EOS_ID] for line in lines]

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return ["".join(chr(i - 10) for i in row) for row in ids]


def _reverse_search(model: nn.Module, src_ids: torch.Tensor) -> list[list[_Hyp]]:
    """A 'beam search' that reverses each source (drops pad and eos): n-best of size 1."""
    assert not model.training
    rows = [[t for t in row if t not in (PAD_ID, EOS_ID)] for row in src_ids.tolist()]
    return [[_Hyp(row[::-1])] for row in rows]


def test_translate_lines_keeps_input_order_across_batches() -> None:
    lines = ["abcdef", "x", "hello world", "", "mt"]
    model = nn.Linear(1, 1)
    out = translate_lines(model, _CharTokenizer(), _reverse_search, lines, max_tokens=8)
    assert out == [line[::-1] for line in lines]
    assert model.training  # restored after decoding


def test_token_budget_batches_respect_budget_and_cover_all() -> None:
    lengths = [5, 1, 9, 3, 3, 12, 2]
    batches = token_budget_batches(lengths, max_tokens=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10


def test_pad_batch_and_best_tokens() -> None:
    padded = pad_batch([[5, 3], [7, 8, 3]])
    assert padded.tolist() == [[5, 3, PAD_ID], [7, 8, 3]]
    assert best_tokens([_Hyp([4]), _Hyp([])]) == [[4], []]
    assert best_tokens([[_Hyp([4]), _Hyp([5])]]) == [[4]]
