"""Label-smoothed loss against the formula written out and against torch's cross_entropy."""

import math

import pytest
import torch
import torch.nn.functional as F

import transformer_mt.training.loss as loss_module
from transformer_mt.training.loss import label_smoothed_nll_loss, projected_smoothed_loss

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


def _composed(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """The loss composed of differentiable torch ops, for autograd's gradient."""
    lprobs = F.log_softmax(logits, dim=-1)
    q = torch.full_like(lprobs, eps / logits.size(-1))
    q.scatter_add_(-1, target.unsqueeze(-1), torch.full_like(lprobs[..., :1], 1.0 - eps))
    per_token = -(q * lprobs).sum(-1)
    return torch.where(target.ne(PAD), per_token, torch.zeros_like(per_token)).sum()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradient_is_autograds_of_the_composed_loss(eps: float) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 9, (3, 4), generator=g)
    target[1, 2:] = PAD
    (want,) = torch.autograd.grad(_composed(logits, target, eps), logits)
    loss, _ = label_smoothed_nll_loss(logits, target, eps, PAD)
    (got,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(got, want)


def test_gradcheck_of_both_outputs() -> None:
    """Finite differences of 0.7 * loss + 0.3 * nll (both output gradients at once)."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1, 4, PAD], [2, 3, 3]])

    def mix(x: torch.Tensor) -> torch.Tensor:
        loss, nll = label_smoothed_nll_loss(x, target, 0.2, PAD)
        return 0.7 * loss + 0.3 * nll

    assert torch.autograd.gradcheck(mix, (logits,))


def test_bfloat16_logits_are_scored_in_float32() -> None:
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 6, generator=g).to(torch.bfloat16).requires_grad_()
    target = torch.tensor([[1, 2, 3], [4, 5, PAD]])
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, PAD)
    assert loss.dtype == nll.dtype == torch.float32
    want = F.cross_entropy(
        logits.float().view(-1, 6), target.view(-1), ignore_index=PAD, label_smoothing=0.1,
        reduction="sum",
    )  # fmt: skip
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


# ---- the output projection fused into the loss, a slice of rows at a time -------------------


def _torch_reference(features, weight, target, eps, bias=None):
    """Reference: torch's own linear and cross_entropy, summed over the non-pad tokens."""
    logits = F.linear(features, weight, bias)
    loss = F.cross_entropy(logits, target, ignore_index=PAD, label_smoothing=eps, reduction="sum")
    return loss, F.cross_entropy(logits, target, ignore_index=PAD, reduction="sum")


@pytest.mark.parametrize("slice_elements", [7 * 3, 7 * 5, 1 << 20])  # 3 rows, 5 rows, all
def test_projected_loss_and_gradients_equal_torch_linear_and_cross_entropy(
    slice_elements: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loss_module, "CPU_SLICE_ELEMENTS", slice_elements)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(13, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 5, 1, PAD, 6, 2, PAD, 4, 4, 1, PAD, 2, 6])
    upstream = (torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64))

    loss, nll = projected_smoothed_loss(features, weight, target, 0.1, PAD)
    (loss * upstream[0] + nll * upstream[1]).backward()
    got = features.grad.clone(), weight.grad.clone()
    features.grad = weight.grad = None
    want_loss, want_nll = _torch_reference(features, weight, target, 0.1)
    (want_loss * upstream[0] + want_nll * upstream[1]).backward()

    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(nll, want_nll)
    torch.testing.assert_close(got[0], features.grad)
    torch.testing.assert_close(got[1], weight.grad)
    assert got[0][target == PAD].abs().max() == 0  # pads get no gradient


def test_projected_loss_with_a_logits_bias_equals_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marian's final_logits_bias: the loss and all three gradients as torch's own."""
    monkeypatch.setattr(loss_module, "CPU_SLICE_ELEMENTS", 7 * 4)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 5, 1, PAD, 6, 2, PAD, 4, 4, 1, 2])
    loss, nll = projected_smoothed_loss(features, weight, target, 0.1, PAD, bias)
    (loss + 0.5 * nll).backward()
    got = [t.grad.clone() for t in (features, weight, bias)]
    for t in (features, weight, bias):
        t.grad = None
    want_loss, want_nll = _torch_reference(features, weight, target, 0.1, bias)
    (want_loss + 0.5 * want_nll).backward()
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(nll, want_nll)
    for mine, theirs in zip(got, (features.grad, weight.grad, bias.grad), strict=True):
        torch.testing.assert_close(mine, theirs)
    assert bias.grad.abs().sum() > 0


def test_projected_loss_of_a_frozen_weight_and_a_second_backward() -> None:
    features = torch.randn(5, 4, requires_grad=True)
    weight = torch.randn(9, 4)  # no grad wanted
    loss, _ = projected_smoothed_loss(features, weight, torch.tensor([1, 2, 3, 4, 5]), 0.1, PAD)
    loss.backward(retain_graph=True)
    assert features.grad is not None and weight.grad is None
    with pytest.raises(RuntimeError, match="one backward only"):
        loss.backward()


def test_projected_loss_in_bfloat16_is_close_to_float32() -> None:
    g = torch.Generator().manual_seed(1)
    features = torch.randn(40, 16, generator=g)
    weight = torch.randn(50, 16, generator=g) * 0.25
    target = torch.randint(1, 50, (40,), generator=g)
    loss16, _ = projected_smoothed_loss(features.bfloat16(), weight, target, 0.1, PAD)
    want, _ = _torch_reference(features, weight, target, 0.1)
    assert loss16.dtype == torch.float32
    assert loss16.item() == pytest.approx(want.item(), rel=2e-2)


def test_projected_loss_under_no_grad_gives_the_same_values() -> None:
    g = torch.Generator().manual_seed(2)
    features = torch.randn(9, 5, generator=g, requires_grad=True)
    weight = torch.randn(11, 5, generator=g, requires_grad=True)
    target = torch.tensor([1, 2, PAD, 4, 5, 6, 7, PAD, 10])
    with torch.no_grad():  # validation: no softmax is kept for a backward
        loss, nll = projected_smoothed_loss(features, weight, target, 0.1, PAD)
        want_loss, want_nll = _torch_reference(features, weight, target, 0.1)
    torch.testing.assert_close((loss, nll), (want_loss, want_nll))
    assert not loss.requires_grad
