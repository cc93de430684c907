"""Greedy search, and the one-hypothesis-per-sentence loop it shares with sampling."""

import math
from collections.abc import Callable

import torch
from torch import Tensor

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.decoding.constraints import check_lengths, max_output_lengths, step_log_probs
from transformer_mt.decoding.hypothesis import Hypothesis, finished_hypothesis
from transformer_mt.decoding.protocol import IncrementalDecoder

PickToken = Callable[[Tensor, Tensor], Tensor]
"""Chooses the next token `(R,)` from constrained log-probabilities `(R, V)`, given which input
rows `(R,)` long those are (sampling draws each row from its own generator)."""


@torch.inference_mode()
def decode_single_path(
    model: IncrementalDecoder,
    src_ids: Tensor,
    pick: PickToken,
    *,
    max_len_a: float,
    max_len_b: float,
    min_len: int,
    len_penalty: float,
    max_len: int | None = None,
) -> list[Hypothesis]:
    """Extend one prefix per sentence with `pick` until EOS or the maximum length.

    src_ids `(B, S)` PAD-padded. A sentence that emits EOS leaves the batch at once: the model is
    asked to keep only the surviving rows, so later steps cost only what is still unfinished.
    """
    check_lengths(max_len_a, max_len_b, min_len, max_len)
    batch_size = src_ids.size(0)
    if batch_size == 0:
        return []
    max_lens = max_output_lengths(src_ids, max_len_a, max_len_b, max_len)  # (B,)
    total = int(max_lens.max())
    state = model.init_incremental_state(model.encode(src_ids), total)
    tokens = src_ids.new_full((batch_size, total), PAD_ID)  # (B, T), EOS included
    scores = torch.zeros(batch_size, total, device=src_ids.device)  # (B, T) log p per token
    lengths = max_lens.clone()  # (B,) every row ends with EOS at max_len at the latest
    active = torch.arange(batch_size, device=src_ids.device)  # (Ba,) input rows still decoding
    prev = src_ids.new_full((batch_size,), BOS_ID)
    for step in range(total):
        lprobs = step_log_probs(
            model.decode_step(prev, state), step, min_len, max_lens[active] - 1 <= step
        )  # (Ba, V)
        prev = pick(lprobs, active)  # (Ba,)
        tokens[active, step] = prev
        scores[active, step] = lprobs.gather(1, prev.unsqueeze(1)).squeeze(1)
        done = prev == EOS_ID
        if bool(done.any()):
            lengths[active[done]] = step + 1
            keep = (~done).nonzero().squeeze(1)  # (Ba',)
            if keep.numel() == 0:
                break
            model.reorder_incremental_state(state, keep)
            active, prev = active[keep], prev[keep]
    token_rows, score_rows = tokens.tolist(), scores.tolist()  # one conversion, not one per row
    return [
        finished_hypothesis(toks[: n - 1], pos[:n], math.fsum(pos[:n]), len_penalty)
        for toks, pos, n in zip(token_rows, score_rows, lengths.tolist(), strict=True)
    ]


def greedy_search(
    model: IncrementalDecoder,
    src_ids: Tensor,
    *,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
    min_len: int = 1,
    len_penalty: float = 1.0,
    max_len: int | None = None,
) -> list[Hypothesis]:
    """The most probable next token at every step, for a batch `(B, S)`; one Hypothesis each.

    Output length is at most `floor(max_len_a * src_len + max_len_b)` tokens including EOS (EOS
    is forced at the last position); EOS is forbidden before `min_len` tokens have been produced
    (min_len=1: no empty outputs). `len_penalty` only sets `Hypothesis.score`, for comparison
    with beam search. Ties go to the lowest token id. `max_len` caps every length limit. The
    caller puts the model in eval mode.
    """
    return decode_single_path(
        model,
        src_ids,
        lambda lprobs, _: lprobs.argmax(dim=-1),
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        min_len=min_len,
        len_penalty=len_penalty,
        max_len=max_len,
    )
