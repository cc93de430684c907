"""The tutorial's toy example, computed by the reference implementation and printed step by step.

Vocabulary 我, 喜欢, 小狗, 吃, 饭 with d = 4; the sentence 我 喜欢 小狗: centre 喜欢, context
我 and 小狗, one negative sample 吃. The vectors are fixed, readable numbers (not trained).
"""

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from transformer_mt.word2vec.reference import NegativeSamplingStep, cbow_step, skipgram_step

TOY_WORDS = ["我", "喜欢", "小狗", "吃", "饭"]
TOY_W_IN = [  # input vectors v (the embeddings)
    [0.2, -0.1, 0.4, 0.0],
    [0.5, 0.3, -0.2, 0.1],
    [0.1, 0.4, 0.3, -0.3],
    [-0.3, 0.2, 0.1, 0.4],
    [0.0, -0.4, 0.2, 0.3],
]
TOY_W_OUT = [  # output vectors u (the word being predicted)
    [0.3, 0.1, -0.2, 0.4],
    [-0.1, 0.5, 0.2, 0.0],
    [0.4, 0.2, 0.1, -0.2],
    [-0.2, 0.3, 0.4, 0.1],
    [0.1, -0.3, 0.0, 0.2],
]
TOY_LR = 0.1
WO, LIKE, PUPPY, EAT = 0, 1, 2, 3  # ids of 我, 喜欢, 小狗, 吃


def toy_vectors() -> tuple[Tensor, Tensor]:
    """(W_in, W_out), each (5, 4) float64 so the printout shows exact decimals."""
    return torch.tensor(TOY_W_IN, dtype=torch.float64), torch.tensor(TOY_W_OUT, dtype=torch.float64)


def toy_skipgram_step(lr: float = TOY_LR) -> NegativeSamplingStep:
    """Skip-gram: 喜欢 predicts 我 and 小狗 (two examples), each against the negative 吃."""
    W_in, W_out = toy_vectors()
    centres = torch.tensor([LIKE, LIKE])
    contexts = torch.tensor([WO, PUPPY])
    negatives = torch.tensor([[EAT], [EAT]])
    return skipgram_step(W_in, W_out, centres, contexts, negatives, lr)


def toy_cbow_step(lr: float = TOY_LR) -> NegativeSamplingStep:
    """CBOW: the mean of 我 and 小狗 predicts 喜欢, against the negative 吃."""
    W_in, W_out = toy_vectors()
    contexts, mask = torch.tensor([[WO, PUPPY]]), torch.tensor([[True, True]])
    return cbow_step(W_in, W_out, contexts, mask, torch.tensor([LIKE]), torch.tensor([[EAT]]), lr)


def _fmt(vec: Tensor) -> str:
    return "[" + ", ".join(f"{x:+.4f}" for x in vec.tolist()) + "]"


def _vectors_table(title: str, W: Tensor) -> Table:
    table = Table(title=title)
    table.add_column("word")
    table.add_column("vector")
    for word, row in zip(TOY_WORDS, W, strict=True):
        table.add_row(word, _fmt(row))
    return table


def _scores_table(
    step: NegativeSamplingStep, hidden: list[str], positives: list[int], negatives: list[list[int]]
) -> Table:
    table = Table(title="scores, sigmoids and loss per example")
    for col in ("h", "word", "role", "s = u·h", "σ(s)", "loss term"):
        table.add_column(col, justify="right" if col[0] in "sσl" else "left")
    for p, name in enumerate(hidden):
        s = step.score_pos[p]
        table.add_row(
            name,
            TOY_WORDS[positives[p]],
            "positive",
            f"{s:+.4f}",
            f"{step.sigmoid_pos[p]:.4f}",
            f"-log σ(s) = {-torch.nn.functional.logsigmoid(s):.4f}",
        )
        for k, neg in enumerate(negatives[p]):
            s = step.score_neg[p, k]
            table.add_row(
                "",
                TOY_WORDS[neg],
                "negative",
                f"{s:+.4f}",
                f"{step.sigmoid_neg[p, k]:.4f}",
                f"-log σ(-s) = {-torch.nn.functional.logsigmoid(-s):.4f}",
            )
    return table


def _gradient_table(step: NegativeSamplingStep, W_in: Tensor, W_out: Tensor) -> Table:
    table = Table(title="one SGD step: W ← W - lr · ∂L/∂W (rows that change)")
    for col in ("matrix", "word", "before", "∂L/∂row", "after"):
        table.add_column(col)
    for name, W, grad, new in (
        ("v (in)", W_in, step.grad_W_in, step.W_in_new),
        ("u (out)", W_out, step.grad_W_out, step.W_out_new),
    ):
        for i in grad.abs().sum(1).nonzero().squeeze(1).tolist():
            table.add_row(name, TOY_WORDS[i], _fmt(W[i]), _fmt(grad[i]), _fmt(new[i]))
    return table


def explain_toy(
    console: Console, skip_gram: bool = True, lr: float = TOY_LR
) -> NegativeSamplingStep:
    """Print the whole computation of one step on the toy sentence; returns the step."""
    W_in, W_out = toy_vectors()
    console.rule(
        f"Word2Vec {'skip-gram' if skip_gram else 'CBOW'}, negative sampling, one step (lr = {lr})"
    )
    console.print("loss per example: L = -[log σ(u_o·h) + Σ_k log σ(-u_k·h)]", markup=False)
    console.print(_vectors_table("input vectors v (embeddings)", W_in))
    console.print(_vectors_table("output vectors u", W_out))
    if skip_gram:
        step = toy_skipgram_step(lr)
        console.print("skip-gram: h = v(喜欢); it must predict 我 and 小狗 and reject 吃")
        table = _scores_table(step, ["v(喜欢)", "v(喜欢)"], [WO, PUPPY], [[EAT], [EAT]])
    else:
        step = toy_cbow_step(lr)
        console.print(
            f"CBOW: h = (v(我) + v(小狗)) / 2 = {_fmt(step.h[0])}; "
            "it must predict 喜欢 and reject 吃",
            markup=False,
        )
        table = _scores_table(step, ["mean(v(我), v(小狗))"], [LIKE], [[EAT]])
    console.print(table)
    console.print(f"total loss L = {step.loss:.4f}")
    console.print(
        "gradients: ∂L/∂h = (σ(u_o·h) - 1) u_o + Σ_k σ(u_k·h) u_k,  "
        "∂L/∂u_o = (σ(u_o·h) - 1) h,  ∂L/∂u_k = σ(u_k·h) h",
        markup=False,
    )
    console.print(_gradient_table(step, W_in, W_out))
    return step
