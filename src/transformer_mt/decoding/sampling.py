"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering."""

from collections.abc import Sequence

import torch
from torch import Tensor

from transformer_mt.decoding.greedy import decode_single_path
from transformer_mt.decoding.hypothesis import Hypothesis
from transformer_mt.decoding.protocol import IncrementalDecoder


def _check_filter(k: int, p: float) -> None:
    if k < 0:
        raise ValueError(f"top_k must be >= 0 (0 disables it), got {k}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 disables it), got {p}")


def top_k_top_p_filter(logits: Tensor, k: int = 0, p: float = 1.0) -> Tensor:
    """Set to -inf every logit outside the top-k, then outside the nucleus of mass p.

    logits `(..., V)`; returns a new tensor of the same shape. k=0 and p=1 disable each filter.
    Top-k keeps the tokens with fewer than k tokens strictly more probable; top-p then
    renormalizes over what top-k kept and keeps a token when the probability of the tokens
    strictly more probable than it is below p, i.e. the smallest set of most probable tokens
    whose mass reaches p. Ties at either boundary are all kept, so the kept set never depends on
    sort order (it may then hold more than k tokens, or more mass than needed). The most
    probable token always survives.
    """
    _check_filter(k, p)
    if 0 < k < logits.size(-1):
        kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if p < 1.0:
        sorted_logits = logits.sort(dim=-1, descending=True).values  # (..., V)
        mass_before = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # index of the first sorted token at which the cumulative mass reaches p
        last = (mass_before < p).sum(dim=-1, keepdim=True).clamp_(max=logits.size(-1) - 1)
        threshold = sorted_logits.gather(-1, last)  # (..., 1)
        logits = logits.masked_fill(logits < threshold, -torch.inf)
    return logits


def sample(
    model: IncrementalDecoder,
    src_ids: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
    min_len: int = 1,
    len_penalty: float = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    max_len: int | None = None,
) -> list[Hypothesis]:
    """Draw one output per sentence of `src_ids` `(B, S)` from the model.

    Each token is drawn from softmax(top_k_top_p_filter(log p / temperature, top_k, top_p)),
    after the same constraints as greedy search (no PAD/BOS, min_len, EOS forced at
    `floor(max_len_a * src_len + max_len_b)`). Hypothesis scores are the model's own
    log-probabilities, not those of the tempered, filtered distribution. Pass a seeded
    `generator` (on the model's device) for reproducible draws, or one generator per row of
    `src_ids`: each sentence then draws only from its own, so its sample does not depend on
    which other sentences share the batch (or on their order).
    """
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 (use greedy_search for argmax), got {temperature}"
        )
    _check_filter(top_k, top_p)
    per_row = generator is not None and not isinstance(generator, torch.Generator)
    if per_row and len(generator) != src_ids.size(0):
        raise ValueError(f"{len(generator)} generators for {src_ids.size(0)} rows")

    def pick(lprobs: Tensor, active: Tensor) -> Tensor:
        probs = top_k_top_p_filter(lprobs / temperature, top_k, top_p).softmax(dim=-1)
        if not per_row:
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (R,)
        draws = [
            torch.multinomial(row, 1, generator=generator[i])
            for row, i in zip(probs, active.tolist(), strict=True)
        ]
        return torch.cat(draws)  # (R,)

    return decode_single_path(
        model,
        src_ids,
        pick,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        min_len=min_len,
        len_penalty=len_penalty,
        max_len=max_len,
    )
