"""Skip-gram and CBOW with negative sampling, written out as the formulas (Mikolov et al., 2013).

A readable reference, not a fast trainer: every intermediate of one SGD step is returned so the
tutorial printout and the tests can look at it. Notation:

- ``W_in`` (V, d): input vectors ``v`` (the centre word for skip-gram, the context words for
  CBOW); these become the embeddings.
- ``W_out`` (V, d): output vectors ``u`` (the word being predicted).
- ``h`` (P, d): the hidden vector of each of P training examples: ``v_c`` for skip-gram, the mean
  of the context input vectors for CBOW.

Loss of one example, with positive (true) output word ``o`` and K sampled negatives ``k``::

    L = -[ log σ(u_o·h) + Σ_k log σ(-u_k·h) ]

and its gradients, since d/dx log σ(x) = 1 - σ(x)::

    ∂L/∂h   = (σ(u_o·h) - 1) u_o + Σ_k σ(u_k·h) u_k
    ∂L/∂u_o = (σ(u_o·h) - 1) h
    ∂L/∂u_k = σ(u_k·h) h

The loss of a batch is the sum over its examples (word2vec updates pair by pair; the sum is
the same step taken for all pairs at once).
"""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class NegativeSamplingStep:
    """Everything computed in one step; P examples, K negatives each, vocabulary V, size d."""

    h: Tensor  # (P, d) hidden vector: v_c (skip-gram) or mean of context v (CBOW)
    u_pos: Tensor  # (P, d) output vector of the true word
    u_neg: Tensor  # (P, K, d) output vectors of the negatives
    score_pos: Tensor  # (P,) u_o·h
    score_neg: Tensor  # (P, K) u_k·h
    sigmoid_pos: Tensor  # (P,) σ(u_o·h), the probability that o is a real context
    sigmoid_neg: Tensor  # (P, K) σ(u_k·h), the probability that k is (wrongly) a context
    loss_per_example: Tensor  # (P,)
    loss: Tensor  # () sum over examples
    grad_h: Tensor  # (P, d)
    grad_u_pos: Tensor  # (P, d)
    grad_u_neg: Tensor  # (P, K, d)
    grad_W_in: Tensor  # (V, d) gradients scattered to the rows used (repeats add up)
    grad_W_out: Tensor  # (V, d)
    W_in_new: Tensor  # (V, d) after one SGD step W - lr * grad
    W_out_new: Tensor  # (V, d)


def negative_sampling_loss(h: Tensor, u_pos: Tensor, u_neg: Tensor) -> Tensor:
    """Per-example loss -[log σ(u_o·h) + Σ_k log σ(-u_k·h)]; h, u_pos (P, d), u_neg (P, K, d).

    Differentiable, so the tests can compare the closed-form gradients with autograd.
    """
    score_pos = (u_pos * h).sum(-1)  # (P,)
    score_neg = torch.einsum("pkd,pd->pk", u_neg, h)  # (P, K)
    # logsigmoid is log σ computed without overflow for large |x|.
    return -(
        torch.nn.functional.logsigmoid(score_pos)
        + torch.nn.functional.logsigmoid(-score_neg).sum(-1)
    )


def _step(
    W_in: Tensor,
    W_out: Tensor,
    h: Tensor,
    positives: Tensor,
    negatives: Tensor,
    scatter_grad_h,
    lr: float,
) -> NegativeSamplingStep:
    """Shared part of both models: scores, loss, closed-form gradients, SGD update.

    ``scatter_grad_h(grad_h) -> (V, d)`` sends ∂L/∂h back to the input rows that made h.
    """
    u_pos, u_neg = W_out[positives], W_out[negatives]  # (P, d), (P, K, d)
    score_pos = (u_pos * h).sum(-1)  # (P,)
    score_neg = torch.einsum("pkd,pd->pk", u_neg, h)  # (P, K)
    sigmoid_pos, sigmoid_neg = torch.sigmoid(score_pos), torch.sigmoid(score_neg)
    loss_per_example = negative_sampling_loss(h, u_pos, u_neg)

    coef_pos = sigmoid_pos - 1.0  # (P,) ∂L/∂(u_o·h)
    grad_h = coef_pos[:, None] * u_pos + torch.einsum("pk,pkd->pd", sigmoid_neg, u_neg)
    grad_u_pos = coef_pos[:, None] * h  # (P, d)
    grad_u_neg = sigmoid_neg[..., None] * h[:, None, :]  # (P, K, d)

    d = W_out.shape[1]
    grad_W_out = torch.zeros_like(W_out)
    grad_W_out.index_add_(0, positives, grad_u_pos)
    grad_W_out.index_add_(0, negatives.reshape(-1), grad_u_neg.reshape(-1, d))  # (P*K, d)
    grad_W_in = scatter_grad_h(grad_h)
    return NegativeSamplingStep(
        h=h,
        u_pos=u_pos,
        u_neg=u_neg,
        score_pos=score_pos,
        score_neg=score_neg,
        sigmoid_pos=sigmoid_pos,
        sigmoid_neg=sigmoid_neg,
        loss_per_example=loss_per_example,
        loss=loss_per_example.sum(),
        grad_h=grad_h,
        grad_u_pos=grad_u_pos,
        grad_u_neg=grad_u_neg,
        grad_W_in=grad_W_in,
        grad_W_out=grad_W_out,
        W_in_new=W_in - lr * grad_W_in,
        W_out_new=W_out - lr * grad_W_out,
    )


def _check_ids(name: str, ids: Tensor, vocab_size: int) -> None:
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must be a LongTensor of word ids, got {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} has ids outside [0, {vocab_size}): {ids.tolist()}")


def skipgram_step(
    W_in: Tensor, W_out: Tensor, centres: Tensor, contexts: Tensor, negatives: Tensor, lr: float
) -> NegativeSamplingStep:
    """One SGD step of skip-gram: each centre word c predicts one context word o.

    centres, contexts (P,) long; negatives (P, K) long; W_in, W_out (V, d).
    """
    V = W_in.shape[0]
    for name, ids in (("centres", centres), ("contexts", contexts), ("negatives", negatives)):
        _check_ids(name, ids, V)
    if negatives.dim() != 2 or negatives.shape[0] != centres.shape[0]:
        raise ValueError(
            f"negatives must be (P, K) with P={centres.shape[0]}, got {tuple(negatives.shape)}"
        )

    def scatter(grad_h: Tensor) -> Tensor:
        return torch.zeros_like(W_in).index_add_(0, centres, grad_h)

    return _step(W_in, W_out, W_in[centres], contexts, negatives, scatter, lr)


def cbow_step(
    W_in: Tensor,
    W_out: Tensor,
    contexts: Tensor,
    context_mask: Tensor,
    centres: Tensor,
    negatives: Tensor,
    lr: float,
) -> NegativeSamplingStep:
    """One SGD step of CBOW: the mean of the context input vectors predicts the centre word.

    contexts (P, C) long with context_mask (P, C) bool (False = padding, for windows cut at a
    sentence edge); centres (P,) long; negatives (P, K) long. Each context row receives
    ∂L/∂h / (number of context words), as h is their mean.
    """
    V = W_in.shape[0]
    for name, ids in (("contexts", contexts), ("centres", centres), ("negatives", negatives)):
        _check_ids(name, ids, V)
    counts = context_mask.sum(-1)  # (P,)
    if (counts == 0).any():
        raise ValueError(
            "every CBOW example needs at least one context word (context_mask row all False)"
        )
    weights = context_mask.to(W_in.dtype) / counts[:, None]  # (P, C)
    h = torch.einsum("pc,pcd->pd", weights, W_in[contexts])  # (P, d) mean of context vectors

    def scatter(grad_h: Tensor) -> Tensor:
        grad_ctx = weights[..., None] * grad_h[:, None, :]  # (P, C, d)
        d = W_in.shape[1]
        return torch.zeros_like(W_in).index_add_(0, contexts.reshape(-1), grad_ctx.reshape(-1, d))

    return _step(W_in, W_out, h, centres, negatives, scatter, lr)
