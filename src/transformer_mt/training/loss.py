"""Label-smoothed cross-entropy (Szegedy et al. 2016; "Attention Is All You Need" §5.4).

With a vocabulary of thousands, the loss over (tokens, V) logits is a fifth of a small model's
training step on a CPU. So it is one autograd Function: the forward keeps only the logits and a
log-normalizer per token, and the backward writes softmax − q in four passes over (tokens, V),
where the composed version (log_softmax, gather, mean and their backward) makes about eleven.
"""

import torch
from torch import Tensor

from transformer_mt.model import Transformer


def _row_losses(
    logits: Tensor, target: Tensor, keep: Tensor, epsilon: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Summed smoothed loss and NLL of (n, V) logits over the kept rows, and lse per row.

    Per token, with lse = log Σ_k exp(x_k): nll = lse − x_y and the smoothed loss is
    (1 − ε)·nll + ε·(lse − mean_k x_k).
    """
    lse = torch.logsumexp(logits, dim=-1)  # (n,)
    nll = lse - logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = nll * (1.0 - epsilon) + (lse - logits.mean(dim=-1)) * epsilon
    return (loss * keep).sum(), (nll * keep).sum(), lse


def _softmax_to_grad_(
    probs: Tensor, target: Tensor, keep: Tensor, epsilon: float, grad_loss: Tensor, grad_nll: Tensor
) -> Tensor:
    """Overwrite softmax rows (n, V) with d(grad_loss·loss + grad_nll·nll)/dlogits: the
    gradients of loss and nll are softmax(x) − q, q = (1 − ε)·onehot(y) + ε/V, and
    softmax(x) − onehot(y)."""
    probs.mul_(((grad_loss + grad_nll) * keep).unsqueeze(-1))
    probs.sub_((grad_loss * epsilon / probs.size(-1) * keep).unsqueeze(-1))
    gold = -(grad_loss * (1.0 - epsilon) + grad_nll) * keep  # (n,)
    return probs.scatter_add_(-1, target.unsqueeze(-1), gold.unsqueeze(-1))


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed smoothed loss and summed NLL of (N, V) logits; rows with keep=0 count for nothing."""

    @staticmethod
    def forward(
        ctx, logits: Tensor, target: Tensor, keep: Tensor, epsilon: float
    ) -> tuple[Tensor, Tensor]:
        loss, nll, lse = _row_losses(logits, target, keep, epsilon)
        ctx.save_for_backward(logits, target, keep, lse)
        ctx.epsilon = epsilon
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor, None, None, None]:
        logits, target, keep, lse = ctx.saved_tensors
        probs = torch.sub(logits, lse.unsqueeze(-1)).exp_()  # softmax, (N, V)
        grad = _softmax_to_grad_(probs, target, keep, ctx.epsilon, grad_loss, grad_nll)
        return grad, None, None, None


def label_smoothed_nll_loss(
    logits: Tensor, target: Tensor, epsilon: float, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL over the non-pad target tokens.

    The smoothed target distribution is q(k) = (1 - epsilon) * [k == y] + epsilon / V over all
    V classes (the convention of ``torch.nn.functional.cross_entropy(label_smoothing=...)``),
    so the loss per token is (1 - epsilon) * nll + epsilon * mean_k(-log p(k)).

    Args:
        logits: (..., V) unnormalized scores.
        target: (...) gold ids; positions equal to ``ignore_index`` contribute nothing.
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


# Rows of logits per slice, as a number of elements: on a CPU a slice stays under glibc's
# 32 MiB mmap threshold (so its memory is reused, not page-faulted in again) and in cache-sized
# pieces; on accelerators slices are large, to keep kernels few.
CPU_SLICE_ELEMENTS = 1 << 21
ACCELERATOR_SLICE_ELEMENTS = 1 << 26


class _ProjectedSmoothedCrossEntropy(torch.autograd.Function):
    """`_SmoothedCrossEntropy` of logits = features @ weight.T (+ bias), computed a slice of
    rows at a time: the (N, V) logits are never one tensor, and each slice is turned into its
    softmax in place for the backward. Matmuls run in the features' dtype (bf16 under
    autocast), the softmax and the loss in float32 (float64 for float64 features)."""

    @staticmethod
    def forward(
        ctx,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        keep: Tensor,
        epsilon: float,
        for_backward: bool,
    ) -> tuple[Tensor, Tensor]:
        weight_mm = weight.to(features.dtype)
        budget = CPU_SLICE_ELEMENTS if features.is_cpu else ACCELERATOR_SLICE_ELEMENTS
        rows = max(1, budget // weight.size(0))
        loss_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        loss = features.new_zeros((), dtype=loss_dtype)
        nll = features.new_zeros((), dtype=loss_dtype)
        softmaxes = []
        for start in range(0, features.size(0), rows):
            logits = torch.mm(features[start : start + rows], weight_mm.t()).to(loss_dtype)
            if bias is not None:
                logits += bias.to(loss_dtype)
            rows_loss, rows_nll, lse = _row_losses(
                logits, target[start : start + rows], keep[start : start + rows], epsilon
            )
            loss += rows_loss
            nll += rows_nll
            if for_backward:  # not under no_grad (validation): no softmax pass then
                softmaxes.append(logits.sub_(lse.unsqueeze(-1)).exp_())  # in place
        ctx.save_for_backward(features, weight, target, keep)
        ctx.has_bias = bias is not None
        ctx.softmaxes = softmaxes if for_backward else None
        ctx.rows, ctx.epsilon = rows, epsilon
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_nll: Tensor) -> tuple[Tensor | None, ...]:
        features, weight, target, keep = ctx.saved_tensors
        if ctx.softmaxes is None:
            raise RuntimeError("the projected loss keeps its softmax for one backward only")
        rows = ctx.rows
        weight_mm = weight.to(features.dtype)
        grad_features = torch.empty_like(features)
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_bias = (
            torch.zeros(weight.size(0), dtype=weight.dtype, device=weight.device)
            if ctx.has_bias and ctx.needs_input_grad[2]
            else None
        )
        for i, start in enumerate(range(0, features.size(0), rows)):
            stop = start + rows
            grad = _softmax_to_grad_(  # in place: dloss / dlogits of these rows
                ctx.softmaxes[i], target[start:stop], keep[start:stop], ctx.epsilon,
                grad_loss, grad_nll,
            )  # fmt: skip
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0).to(grad_bias.dtype)
            grad = grad.to(features.dtype)
            torch.mm(grad, weight_mm, out=grad_features[start:stop])
            if grad_weight is not None and grad.dtype == grad_weight.dtype:
                grad_weight.addmm_(grad.t(), features[start:stop])
            elif grad_weight is not None:  # bf16 matmul, float32 accumulation
                grad_weight += torch.mm(grad.t(), features[start:stop]).to(weight.dtype)
        ctx.softmaxes = None
        return grad_features, grad_weight, grad_bias, None, None, None, None


def projected_smoothed_loss(
    features: Tensor,
    weight: Tensor,
    target: Tensor,
    epsilon: float,
    ignore_index: int,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """`label_smoothed_nll_loss` of the logits features @ weight.T + bias, without ever
    holding the whole (N, V) logits: on a CPU, faster than projecting first (no page-faulted
    (N, V) tensors, cache-sized passes), and on any device, less memory.

    Args:
        features: (..., D) decoder outputs before the output layer (`Transformer.features`).
        weight: (V, D) the output layer's matrix (`Transformer.output_weight`).
        target: (...) gold ids; positions equal to ``ignore_index`` contribute nothing.
        bias: (V,) the logits' bias (`Transformer.output_bias`), or None.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
    flat = features.reshape(-1, features.size(-1))  # (N, D)
    target = target.reshape(-1)
    keep = target.ne(ignore_index)
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    needs_grad = flat.requires_grad or weight.requires_grad
    needs_grad = needs_grad or (bias is not None and bias.requires_grad)
    for_backward = torch.is_grad_enabled() and needs_grad
    return _ProjectedSmoothedCrossEntropy.apply(
        flat, weight, bias, target.masked_fill(~keep, 0), keep.to(dtype), epsilon, for_backward
    )


def teacher_forced_loss(
    model: Transformer,
    src_ids: Tensor,
    tgt_in_ids: Tensor,
    tgt_out_ids: Tensor,
    epsilon: float,
    pad_id: int,
) -> tuple[Tensor, Tensor]:
    """(summed smoothed loss, summed NLL) of a `Transformer` on a batch: only the non-pad
    target rows of its decoder output are projected to the vocabulary, a slice at a time."""
    keep = tgt_out_ids.ne(pad_id)
    features = model.features(src_ids, tgt_in_ids)[keep]  # (N, D)
    return projected_smoothed_loss(
        features, model.output_weight, tgt_out_ids[keep], epsilon, pad_id, model.output_bias
    )
