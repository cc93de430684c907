"""Fake decoders that implement the incremental-decoding protocol, for the search tests.

Each fake keeps, per state row, the source and the tokens fed so far, and moves them with
`reorder_incremental_state` exactly as a real cache would; its next-token distribution is a
function of (source, prefix). A search that reorders wrongly therefore gets the wrong
probabilities and fails the hand-worked and brute-force checks.
"""

import zlib
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from transformer_mt.constants import BOS_ID, PAD_ID

A, B = 4, 5  # the two ordinary target tokens of the fake vocabulary (0-3 are the specials)
VOCAB_SIZE = 6


class PrefixDecoder:
    """Next-token logits `logits_fn(src, prefix)`; src without PAD, prefix without BOS.

    Records the number of rows of every decode_step and every reorder index, so tests can see
    finished sentences leave the batch.
    """

    def __init__(self, logits_fn: Callable[[tuple[int, ...], tuple[int, ...]], Tensor]) -> None:
        self.logits_fn = logits_fn
        self.batch_sizes: list[int] = []
        self.reorders: list[list[int]] = []

    def log_probs(self, src: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        """The model's log p(next | src, prefix) over the whole vocabulary `(V,)` float64."""
        return torch.log_softmax(self.logits_fn(src, prefix).double(), dim=-1)

    def encode(self, src_ids: Tensor) -> Tensor:
        return src_ids.clone()

    def init_incremental_state(self, enc: Tensor, capacity: int) -> dict[str, Tensor]:
        return {"src": enc, "prefix": enc.new_empty(enc.size(0), 0)}

    def decode_step(self, prev_tokens: Tensor, state: dict[str, Tensor]) -> Tensor:
        assert prev_tokens.shape == (state["src"].size(0),)
        state["prefix"] = torch.cat([state["prefix"], prev_tokens.unsqueeze(1)], dim=1)
        self.batch_sizes.append(prev_tokens.numel())
        rows = []
        for src, prefix in zip(state["src"].tolist(), state["prefix"].tolist(), strict=True):
            # later positions may hold PAD/BOS: tiny vocabularies leave beams at -inf score
            # whose token is arbitrary; the search never finalizes them
            assert prefix[0] == BOS_ID
            rows.append(self.logits_fn(tuple(t for t in src if t != PAD_ID), tuple(prefix[1:])))
        return torch.stack(rows).float()

    def reorder_incremental_state(self, state: dict[str, Tensor], new_order: Tensor) -> None:
        self.reorders.append(new_order.tolist())
        for key in state:
            state[key] = state[key].index_select(0, new_order)


def scripted(table: dict[tuple[int, ...], dict[int, float]]) -> PrefixDecoder:
    """A decoder with fixed probabilities per prefix (token -> p; unlisted tokens get 0).

    Prefixes missing from the table (only reached by beams already at -inf) emit EOS.
    """

    def logits_fn(src: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        probs = torch.zeros(VOCAB_SIZE, dtype=torch.float64)
        for token, p in table.get(prefix, {3: 1.0}).items():
            probs[token] = p
        return probs.log()

    return PrefixDecoder(logits_fn)


def random_prefix_decoder(seed: int = 0, scale: float = 1.5) -> PrefixDecoder:
    """Logits drawn from a generator seeded by a hash of (seed, src, prefix): every prefix of
    every source has its own arbitrary distribution, including mass on PAD and BOS."""

    def logits_fn(src: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        key = zlib.crc32(repr((seed, src, prefix)).encode())
        gen = torch.Generator().manual_seed(key)
        return scale * torch.randn(VOCAB_SIZE, generator=gen, dtype=torch.float64)

    return PrefixDecoder(logits_fn)


@pytest.fixture
def make_scripted() -> Callable[[dict], PrefixDecoder]:
    return scripted


@pytest.fixture
def make_random() -> Callable[..., PrefixDecoder]:
    return random_prefix_decoder


@pytest.fixture
def make_prefix_decoder() -> type[PrefixDecoder]:
    return PrefixDecoder
