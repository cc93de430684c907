"""Label-smoothed cross-entropy (Szegedy et al. 2016; "Attention Is All You Need" §5.4).

With a vocabulary of thousands, the loss over (tokens, V) logits is a fifth of a small model's
training step on a CPU. So it is one autograd Function: the forward keeps only the logits and a
log-normalizer per token, and the backward writes softmax − q in four passes over (tokens, V),
where the composed version (log_softmax, gather, mean and their backward) makes about eleven.
"""

import torch
from torch import Tensor


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed smoothed loss and summed NLL of (N, V) logits; rows with keep=0 count for nothing.

    Per token, with lse = log Σ_k exp(x_k): nll = lse − x_y and the smoothed loss is
    (1 − ε)·nll + ε·(lse − mean_k x_k). Their gradients are softmax(x) − onehot(y) and
    softmax(x) − q with q = (1 − ε)·onehot(y) + ε/V.
    """

    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, keep: Tensor, epsilon: float
    ) -> tuple[Tensor, Tensor]:
        lse = torch.logsumexp(logits, dim=-1)  # (N,)
        nll = lse - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N,)
        loss = nll * (1.0 - epsilon) + (lse - logits.mean(dim=-1)) * epsilon
        ctx.save_for_backward(logits, target, keep, lse)
        ctx.epsilon = epsilon
        return (loss * keep).sum(), (nll * keep).sum()

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logits, target, keep, lse = ctx.saved_tensors
        eps, vocab = ctx.epsilon, logits.size(-1)
        grad = torch.sub(logits, lse.unsqueeze(-1)).exp_()  # softmax, (N, V)
        grad.mul_(((grad_loss + grad_nll) * keep).unsqueeze(-1))
        grad.sub_((grad_loss * eps / vocab * keep).unsqueeze(-1))
        gold = -(grad_loss * (1.0 - eps) + grad_nll) * keep  # (N,)
        grad.scatter_add_(-1, target.unsqueeze(-1), gold.unsqueeze(-1))
        return grad, None, None, None


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
        (loss_sum, nll_sum): scalars summed over tokens, in float32 (float64 for float64
        logits). The NLL is unsmoothed and gives the perplexity; divide both by the number of
        non-pad tokens for per-token values.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    if logits.dtype != torch.float64:
        logits = logits.float()  # float32 even under bf16 autocast
    flat = logits.reshape(-1, logits.size(-1))  # (N, V)
    target = target.reshape(-1)
    keep = target.ne(ignore_index)
    safe_target = target.masked_fill(~keep, 0)
    return _SmoothedCrossEntropy.apply(flat, safe_target, keep.to(flat.dtype), epsilon)
