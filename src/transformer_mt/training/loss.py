"""Label-smoothed cross-entropy (Szegedy et al. 2016; "Attention Is All You Need" §5.4)."""

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll_loss(
    logits: Tensor, target: Tensor, epsilon: float, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL over the non-pad target tokens.

    The smoothed target distribution is q(k) = (1 - epsilon) * [k == y] + epsilon / V over all
    V classes (the convention of ``torch.nn.functional.cross_entropy(label_smoothing=...)``),
    so the loss per token is (1 - epsilon) * nll + epsilon * mean_k(-log p(k)).

    Args:
        logits: (B, T, V) unnormalized scores.
        target: (B, T) gold ids; positions equal to ``ignore_index`` contribute nothing.
        epsilon: smoothing mass in [0, 1).
        ignore_index: the pad id.

    Returns:
        (loss_sum, nll_sum): scalars summed over tokens, in float32. The NLL is unsmoothed and
        gives the perplexity; divide both by the number of non-pad tokens for per-token values.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    lprobs = F.log_softmax(logits.float(), dim=-1)  # float32 even under bf16 autocast
    keep = target.ne(ignore_index)  # (B, T)
    safe_target = target.masked_fill(~keep, 0).unsqueeze(-1)  # (B, T, 1)
    nll = -lprobs.gather(dim=-1, index=safe_target).squeeze(-1)  # (B, T)
    uniform = -lprobs.mean(dim=-1)  # (B, T): cross-entropy against the uniform distribution
    loss = (1.0 - epsilon) * nll + epsilon * uniform
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(keep, loss, zero).sum(), torch.where(keep, nll, zero).sum()
