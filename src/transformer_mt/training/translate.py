"""Turning source ids or raw lines into detokenized translations with any search function.

A search function is ``transformer_mt.decoding.greedy_search`` or ``beam_search`` with its
options bound (the ``decoding`` config group builds it with ``_partial_: true``): it takes the
model and a padded ``(B, S)`` batch and returns one Hypothesis per sentence (greedy) or an
n-best list per sentence (beam), from which the best is taken.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from transformer_mt.constants import PAD_ID

SearchFn = Callable[[nn.Module, Tensor], list[Any]]


class TextTokenizer(Protocol):
    """The part of ``transformer_mt.data.Tokenizer`` that translation needs."""

    def encode_src(self, lines: list[str]) -> list[list[int]]: ...

    def decode_tgt(self, ids: list[list[int]]) -> list[str]: ...


def best_tokens(results: list[Any]) -> list[list[int]]:
    """The token ids (no bos/eos) of the best hypothesis per sentence, from greedy or beam."""
    return [(r[0] if isinstance(r, list) else r).tokens for r in results]


@torch.inference_mode()
def decode_batch(model: nn.Module, search: SearchFn, src_ids: Tensor) -> list[list[int]]:
    """Best hypothesis token ids for a padded batch ``src_ids`` (B, S), in batch order."""
    was_training = model.training
    model.eval()
    try:
        return best_tokens(search(model, src_ids))
    finally:
        model.train(was_training)


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size B * max_len stays
    within ``max_tokens`` (a longer sentence gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad_batch(rows: list[list[int]], device: torch.device | str = "cpu") -> Tensor:
    """Right-pad id lists with PAD_ID into a (B, S) long tensor."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)


def translate_lines(
    model: nn.Module,
    tokenizer: TextTokenizer,
    search: SearchFn,
    lines: Sequence[str],
    *,
    max_tokens: int = 4096,
    device: torch.device | str = "cpu",
) -> list[str]:
    """Translate raw source lines; hypotheses come back in input order."""
    src = tokenizer.encode_src(list(lines))
    hypotheses: list[str] = [""] * len(src)
    for batch in token_budget_batches([len(s) for s in src], max_tokens):
        ids = decode_batch(model, search, pad_batch([src[i] for i in batch], device))
        for i, text in zip(batch, tokenizer.decode_tgt(ids), strict=True):
            hypotheses[i] = text
    return hypotheses
