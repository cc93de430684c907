"""Length limits and the per-step masking every search applies to the model's log-probs."""

import torch
from torch import Tensor

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID

# a*len+b is computed in float64; without the epsilon a decimal `a` such as 0.29 times 100 gives
# 28.999999999999996 and floors one token short of what the user wrote.
_FLOOR_EPS = 1e-9


def source_lengths(src_ids: Tensor) -> Tensor:
    """Number of non-PAD tokens of each source row `(B, S)` -> `(B,)` long."""
    return (src_ids != PAD_ID).sum(dim=1)


def max_output_lengths(
    src_ids: Tensor, max_len_a: float, max_len_b: float, max_len: int | None = None
) -> Tensor:
    """`floor(max_len_a * src_len + max_len_b)` output tokens per sentence, EOS included, >= 1,
    and at most `max_len` when given (what the model can represent, e.g. its learned position
    table: fairseq caps at `max_decoder_positions` the same way).

    Returns `(B,)` long on the device of `src_ids`.
    """
    lengths = torch.floor(source_lengths(src_ids).double() * max_len_a + max_len_b + _FLOOR_EPS)
    lengths = lengths.long().clamp_(min=1)
    return lengths if max_len is None else lengths.clamp_(max=max_len)


def check_lengths(
    max_len_a: float, max_len_b: float, min_len: int, max_len: int | None = None
) -> None:
    """Reject length settings that cannot describe an output length."""
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1 (it counts the EOS), got {max_len}")
    if max_len_a < 0:
        raise ValueError(f"max_len_a must be >= 0, got {max_len_a}")
    if min_len < 0:
        raise ValueError(f"min_len must be >= 0, got {min_len}")


def step_log_probs(logits: Tensor, step: int, min_len: int, at_max: Tensor) -> Tensor:
    """Log-probabilities of the next token with the search's constraints applied.

    logits `(R, V)`: the model's scores for step `step` (0-based: the number of tokens already
    produced). at_max `(R,)` bool: rows whose next token is the last one allowed.
    Returns `(R, V)` float32: log_softmax of the logits (not renormalized after masking, as
    fairseq, so scores stay the model's probabilities) where PAD and BOS are never allowed, EOS
    is forbidden while `step < min_len`, and rows at their maximum length may only emit EOS
    (this overrides min_len).
    """
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    if bool(at_max.any()):  # those rows: -inf everywhere but EOS
        eos = lprobs[at_max, EOS_ID]  # (R_max,)
        lprobs[at_max] = -torch.inf
        lprobs[at_max, EOS_ID] = eos
    lprobs[:, PAD_ID] = -torch.inf
    lprobs[:, BOS_ID] = -torch.inf
    if step < min_len:
        lprobs[~at_max, EOS_ID] = -torch.inf
    return lprobs
