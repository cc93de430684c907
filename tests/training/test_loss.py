"""Label-smoothed loss against the formula written out and against torch's cross_entropy."""

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_mt.training.loss import label_smoothed_nll_loss

PAD = 0


def _formula(logits: torch.Tensor, target: torch.Tensor, eps: float) -> tuple[float, float]:
    """Sum over non-pad tokens of -sum_k q(k) log p(k), with p a softmax, written with loops."""
    loss = nll = 0.0
    B, T, V = logits.shape
    for b in range(B):
        for t in range(T):
            y = int(target[b, t])
            if y == PAD:
                continue
            z = [float(v) for v in logits[b, t]]
            log_norm = math.log(sum(math.exp(v) for v in z))
            logp = [v - log_norm for v in z]
            q = [eps / V + (1.0 - eps) * (k == y) for k in range(V)]
            loss += -sum(qk * lp for qk, lp in zip(q, logp, strict=True))
            nll += -logp[y]
    return loss, nll


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_matches_written_out_formula(eps: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)
    target = torch.tensor([[3, 5, 1, PAD], [6, 2, PAD, PAD]])
    loss, nll = label_smoothed_nll_loss(logits, target, eps, PAD)
    want_loss, want_nll = _formula(logits, target, eps)
    assert loss.item() == pytest.approx(want_loss, rel=1e-5)
    assert nll.item() == pytest.approx(want_nll, rel=1e-5)


def test_matches_torch_cross_entropy_with_smoothing() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 11, generator=g)
    target = torch.randint(1, 11, (3, 5), generator=g)
    target[0, 3:] = PAD
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, PAD)
    flat_logits, flat_target = logits.view(-1, 11), target.view(-1)
    ref = F.cross_entropy(
        flat_logits, flat_target, ignore_index=PAD, label_smoothing=0.1, reduction="sum"
    )
    ref_nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, ref_nll)


def test_pad_positions_get_no_gradient() -> None:
    logits = torch.randn(1, 3, 5, requires_grad=True)
    target = torch.tensor([[2, PAD, 4]])
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1, PAD)
    loss.backward()
    assert torch.all(logits.grad[0, 1] == 0)
    assert torch.any(logits.grad[0, 0] != 0)


def test_rejects_epsilon_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        label_smoothed_nll_loss(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.long), 1.0, PAD)
