"""The three searches as configured objects with one calling convention.

Each is built from a ``decoding`` config (``greedy``, ``beam``, ``sample``), checks its settings
when built (so a bad value fails at start, naming the option), and is called as
``search(model, src_ids, row_ids=..., max_len=...)`` returning an n-best list per sentence, best
first: callers never check which search they got.

``row_ids`` name the sentences (e.g. their line numbers); only sampling uses them, to seed one
generator per sentence from ``(seed, row id, draw)``, so a sentence's sample depends on the seed
and its line, not on the batch it happened to share. ``max_len`` caps every length limit (EOS
included) at what the model can represent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_mt.decoding.beam import beam_search
from transformer_mt.decoding.constraints import check_lengths
from transformer_mt.decoding.greedy import greedy_search
from transformer_mt.decoding.hypothesis import Hypothesis
from transformer_mt.decoding.protocol import IncrementalDecoder
from transformer_mt.decoding.sampling import sample


@dataclass(frozen=True)
class GreedySearch:
    """The most probable token at every step (one hypothesis per sentence)."""

    max_len_a: float = 1.2
    max_len_b: float = 10
    min_len: int = 1

    name = "greedy"
    nbest = 1

    def __post_init__(self) -> None:
        check_lengths(self.max_len_a, self.max_len_b, self.min_len)

    def __call__(
        self,
        model: IncrementalDecoder,
        src_ids: Tensor,
        *,
        row_ids: Sequence[int] | None = None,
        max_len: int | None = None,
    ) -> list[list[Hypothesis]]:
        hyps = greedy_search(
            model, src_ids, max_len_a=self.max_len_a, max_len_b=self.max_len_b,
            min_len=self.min_len, max_len=max_len,
        )  # fmt: skip
        return [[h] for h in hyps]


@dataclass(frozen=True)
class BeamSearch:
    """Beam search with fairseq's length penalty; the ``nbest`` best hypotheses per sentence."""

    beam_size: int = 5
    len_penalty: float = 1.0
    max_len_a: float = 1.2
    max_len_b: float = 10
    min_len: int = 1
    nbest: int = 1

    name = "beam"

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"decoding.beam_size must be >= 1, got {self.beam_size}")
        if not 1 <= self.nbest <= self.beam_size:
            raise ValueError(
                f"decoding.nbest must be in [1, beam_size={self.beam_size}], got {self.nbest}"
            )
        check_lengths(self.max_len_a, self.max_len_b, self.min_len)

    def __call__(
        self,
        model: IncrementalDecoder,
        src_ids: Tensor,
        *,
        row_ids: Sequence[int] | None = None,
        max_len: int | None = None,
    ) -> list[list[Hypothesis]]:
        return beam_search(
            model, src_ids, beam_size=self.beam_size, len_penalty=self.len_penalty,
            max_len_a=self.max_len_a, max_len_b=self.max_len_b, min_len=self.min_len,
            nbest=self.nbest, max_len=max_len,
        )  # fmt: skip


@dataclass(frozen=True)
class Sampling:
    """Ancestral sampling (temperature, top-k, top-p); ``nbest`` independent draws per sentence,
    ranked by the model's length-normalized score. With a ``seed`` two runs are identical."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_len_a: float = 1.2
    max_len_b: float = 10
    min_len: int = 1
    len_penalty: float = 1.0
    nbest: int = 1
    seed: int | None = None

    name = "sample"

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(
                f"decoding.temperature must be > 0 (decoding=greedy for argmax), "
                f"got {self.temperature}"
            )
        if self.top_k < 0:
            raise ValueError(f"decoding.top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"decoding.top_p must be in (0, 1] (1 disables it), got {self.top_p}")
        if self.nbest < 1:
            raise ValueError(f"decoding.nbest must be >= 1, got {self.nbest}")
        check_lengths(self.max_len_a, self.max_len_b, self.min_len)

    def __call__(
        self,
        model: IncrementalDecoder,
        src_ids: Tensor,
        *,
        row_ids: Sequence[int] | None = None,
        max_len: int | None = None,
    ) -> list[list[Hypothesis]]:
        batch = src_ids.size(0)
        rows = list(range(batch)) if row_ids is None else list(row_ids)
        repeated = src_ids.repeat_interleave(self.nbest, dim=0)  # (B * n, S), draws adjacent
        generators = None
        if self.seed is not None:
            generators = [
                draw_generator(self.seed, row, k, src_ids.device)
                for row in rows
                for k in range(self.nbest)
            ]
        hyps = sample(
            model, repeated, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            max_len_a=self.max_len_a, max_len_b=self.max_len_b, min_len=self.min_len,
            len_penalty=self.len_penalty, generator=generators, max_len=max_len,
        )  # fmt: skip
        per_sentence = [hyps[i * self.nbest : (i + 1) * self.nbest] for i in range(batch)]
        return [sorted(draws, key=lambda h: -h.score) for draws in per_sentence]


def draw_generator(seed: int, row: int, draw: int, device: torch.device) -> torch.Generator:
    """A generator seeded from (seed, row, draw) alone, hashed so nearby rows are unrelated."""
    key = f"{seed}/{row}/{draw}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=7).digest(), "big")
    return torch.Generator(device=device).manual_seed(value)


Search = GreedySearch | BeamSearch | Sampling
