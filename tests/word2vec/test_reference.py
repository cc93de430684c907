"""The reference skip-gram / CBOW steps against numbers worked out by hand and against autograd."""

import math

import pytest
import torch

from transformer_mt.word2vec.reference import cbow_step, skipgram_step
from transformer_mt.word2vec.tutorial import toy_cbow_step, toy_skipgram_step


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(
        actual, torch.as_tensor(expected, dtype=actual.dtype), atol=1e-8, rtol=1e-7
    )


def test_skipgram_by_hand_2d() -> None:
    # word 0 = centre c, v_c = (1, 2); word 1 = context o, u_o = (0.5, -0.25);
    # word 2 = negative k, u_k = (0.25, 0.5). Unused rows must not move.
    W_in = torch.tensor([[1.0, 2.0], [9.0, 9.0], [9.0, 9.0]], dtype=torch.float64)
    W_out = torch.tensor([[7.0, 7.0], [0.5, -0.25], [0.25, 0.5]], dtype=torch.float64)
    step = skipgram_step(
        W_in, W_out, torch.tensor([0]), torch.tensor([1]), torch.tensor([[2]]), lr=0.1
    )
    # u_o·v_c = 0.5 - 0.5 = 0;  u_k·v_c = 0.25 + 1.0 = 1.25
    close(step.score_pos, [0.0])
    close(step.score_neg, [[1.25]])
    close(step.sigmoid_pos, [0.5])
    close(step.sigmoid_neg, [[0.7772998611746911]])  # σ(1.25)
    # L = -[log σ(0) + log σ(-1.25)] = log 2 + log(1 + e^1.25) = 0.693147... + 1.501929...
    close(step.loss, 2.195076261905318)
    # ∂L/∂v_c = (σ(0) - 1) u_o + σ(1.25) u_k = -0.5 (0.5, -0.25) + 0.7773 (0.25, 0.5)
    close(step.grad_W_in[0], [-0.05567503470632722, 0.5136499305873456])
    # ∂L/∂u_o = (σ(0) - 1) v_c = -0.5 (1, 2);  ∂L/∂u_k = σ(1.25) v_c
    close(step.grad_W_out[1], [-0.5, -1.0])
    close(step.grad_W_out[2], [0.7772998611746911, 1.5545997223493822])
    close(step.grad_W_in[1:], [[0.0, 0.0], [0.0, 0.0]])
    close(step.grad_W_out[0], [0.0, 0.0])
    # one SGD step, lr = 0.1
    close(step.W_in_new[0], [1.0055675034706327, 1.9486350069412654])
    close(step.W_out_new[1], [0.55, -0.15])
    close(step.W_out_new[2], [0.17227001388253088, 0.34454002776506177])
    close(step.W_in_new[1:], W_in[1:])


def test_cbow_by_hand_2d() -> None:
    # context words 0, 1 with v = (1, 0), (0, 2): h = their mean = (0.5, 1).
    # centre word 2 with u = (2, -1); negative word 3 with u = (1, 0.5).
    W_in = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [5.0, 5.0]], dtype=torch.float64)
    W_out = torch.tensor([[3.0, 3.0], [3.0, 3.0], [2.0, -1.0], [1.0, 0.5]], dtype=torch.float64)
    step = cbow_step(
        W_in, W_out, torch.tensor([[0, 1]]), torch.tensor([[True, True]]), torch.tensor([2]),
        torch.tensor([[3]]), lr=1.0,
    )  # fmt: skip
    close(step.h, [[0.5, 1.0]])
    close(step.score_pos, [0.0])  # 1 - 1
    close(step.score_neg, [[1.0]])  # 0.5 + 0.5
    # L = log 2 + log(1 + e) = 0.693147... + 1.313261...
    close(step.loss, 2.006408868078168)
    # ∂L/∂h = -0.5 (2, -1) + σ(1) (1, 0.5); each of the 2 context rows gets half of it
    grad_h = [-0.2689414213699951, 0.8655292893150024]
    close(step.grad_h, [grad_h])
    close(step.grad_W_in[0], [g / 2 for g in grad_h])
    close(step.grad_W_in[1], [g / 2 for g in grad_h])
    close(step.grad_W_out[2], [-0.25, -0.5])  # (σ(0) - 1) h
    close(step.grad_W_out[3], [0.36552928931500245, 0.7310585786300049])  # σ(1) h
    close(step.W_in_new[0], [1.0 + 0.13447071068499755, -0.4327646446575012])


def test_toy_tutorial_numbers() -> None:
    """The printed toy: dot products worked out from the vectors in tutorial.py."""
    sg = toy_skipgram_step(lr=0.1)
    # v(喜欢) = (.5, .3, -.2, .1); u(我) = (.3, .1, -.2, .4); u(小狗) = (.4, .2, .1, -.2);
    # u(吃) = (-.2, .3, .4, .1)
    close(sg.score_pos, [0.15 + 0.03 + 0.04 + 0.04, 0.20 + 0.06 - 0.02 - 0.02])
    close(sg.score_neg, [[-0.10 + 0.09 - 0.08 + 0.01]] * 2)
    expected = sum(-math.log(sigmoid(s)) - math.log(sigmoid(0.08)) for s in (0.26, 0.22))
    close(sg.loss, expected)

    cbow = toy_cbow_step(lr=0.1)
    close(cbow.h, [[0.15, 0.15, 0.35, -0.15]])  # mean of v(我) = (.2, -.1, .4, 0), v(小狗)
    close(cbow.score_pos, [-0.015 + 0.075 + 0.07])  # u(喜欢) = (-.1, .5, .2, 0)
    close(cbow.score_neg, [[-0.03 + 0.045 + 0.14 - 0.015]])
    close(cbow.loss, -math.log(sigmoid(0.13)) - math.log(sigmoid(-0.14)))
    assert toy_step_after(cbow) < cbow.loss  # one step lowers the loss


def toy_step_after(step) -> torch.Tensor:
    """The CBOW toy loss recomputed with the updated vectors."""
    again = cbow_step(
        step.W_in_new, step.W_out_new, torch.tensor([[0, 2]]), torch.tensor([[True, True]]),
        torch.tensor([1]), torch.tensor([[3]]), lr=0.0,
    )  # fmt: skip
    return again.loss


def formula_loss(h: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor) -> torch.Tensor:
    """-Σ_p [log σ(u_o·h) + Σ_k log σ(-u_k·h)], written independently of the module."""
    s_pos = (u_pos * h).sum(-1)
    s_neg = (u_neg * h[:, None, :]).sum(-1)
    return -(torch.log(torch.sigmoid(s_pos)) + torch.log(torch.sigmoid(-s_neg)).sum(-1)).sum()


def random_weights(V: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(V, d, generator=gen, dtype=torch.float64), torch.randn(
        V, d, generator=gen, dtype=torch.float64
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_skipgram_gradients_match_autograd(seed: int) -> None:
    W_in, W_out = random_weights(7, 3, seed)
    # repeats on purpose: centre 2 twice, word 4 both a context and a negative, a negative twice
    centres, contexts = torch.tensor([2, 2, 5, 0]), torch.tensor([4, 1, 2, 6])
    negatives = torch.tensor([[4, 3, 3], [0, 6, 1], [1, 2, 4], [5, 5, 2]])
    step = skipgram_step(W_in, W_out, centres, contexts, negatives, lr=0.3)

    A, B = W_in.clone().requires_grad_(), W_out.clone().requires_grad_()
    loss = formula_loss(A[centres], B[contexts], B[negatives])
    loss.backward()
    torch.testing.assert_close(step.loss, loss.detach())
    torch.testing.assert_close(step.grad_W_in, A.grad)
    torch.testing.assert_close(step.grad_W_out, B.grad)
    torch.testing.assert_close(step.W_in_new, W_in - 0.3 * A.grad)
    torch.testing.assert_close(step.W_out_new, W_out - 0.3 * B.grad)


@pytest.mark.parametrize("seed", [0, 1])
def test_cbow_gradients_match_autograd(seed: int) -> None:
    W_in, W_out = random_weights(7, 4, seed)
    # word 6 only fills masked slots: it must get no gradient
    contexts = torch.tensor([[0, 1, 2, 3], [5, 5, 1, 6], [2, 4, 6, 6]])
    mask = torch.tensor(
        [[True, True, True, True], [True, True, True, False], [True, True, False, False]]
    )
    centres, negatives = torch.tensor([4, 2, 1]), torch.tensor([[1, 5], [2, 0], [3, 3]])
    step = cbow_step(W_in, W_out, contexts, mask, centres, negatives, lr=0.5)

    A, B = W_in.clone().requires_grad_(), W_out.clone().requires_grad_()
    rows = [A[contexts[p][mask[p]]].mean(0) for p in range(3)]  # masked slots left out
    loss = formula_loss(torch.stack(rows), B[centres], B[negatives])
    loss.backward()
    torch.testing.assert_close(step.loss, loss.detach())
    torch.testing.assert_close(step.grad_W_in, A.grad)
    torch.testing.assert_close(step.grad_W_out, B.grad)
    assert step.grad_W_in[6].abs().sum() == 0


def test_bad_ids_are_rejected() -> None:
    W_in, W_out = random_weights(4, 2, 0)
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        skipgram_step(
            W_in, W_out, torch.tensor([0]), torch.tensor([4]), torch.tensor([[1]]), lr=0.1
        )
    with pytest.raises(ValueError, match="at least one context word"):
        cbow_step(
            W_in, W_out, torch.tensor([[0, 1]]), torch.tensor([[False, False]]), torch.tensor([2]),
            torch.tensor([[3]]), lr=0.1,
        )  # fmt: skip
