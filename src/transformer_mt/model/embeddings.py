"""Token embeddings (scaled by sqrt(d_model), section 3.4) and the output projection to logits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """Lookup table whose rows are multiplied by sqrt(d_model) on the way out.

    Initialised as fairseq does: N(0, d_model^-0.5), so scaled embeddings have unit variance and
    are on the same scale as the sinusoidal positions; the padding row is zero and gets no
    gradient.
    """

    def __init__(self, vocab_size: int, d_model: int, pad_id: int) -> None:
        super().__init__()
        self.vocab_size, self.d_model, self.pad_id = vocab_size, d_model, pad_id
        self.scale = math.sqrt(d_model)
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random rows N(0, d_model^-0.5); the padding row zero."""
        nn.init.normal_(self.weight, mean=0.0, std=self.d_model**-0.5)
        with torch.no_grad():
            self.weight[self.pad_id].zero_()

    def forward(self, ids: Tensor) -> Tensor:
        """(B, T) long -> (B, T, D)."""
        return F.embedding(ids, self.weight, padding_idx=self.pad_id) * self.scale

    @torch.no_grad()
    def load_pretrained(
        self, matrix: Tensor | np.ndarray, rows: Sequence[int] | Tensor | None = None
    ) -> None:
        """Copy given vectors into the table (e.g. Word2Vec), before the sqrt(d_model) scale.

        `matrix` is (N, d_model). Without `rows` it replaces the whole table (N = vocab_size);
        with `rows` (N token ids) only those rows are written and the others (e.g. special
        tokens) keep their current values.
        """
        values = torch.as_tensor(matrix, dtype=self.weight.dtype)
        if rows is None:
            expected = (self.vocab_size, self.d_model)
            if tuple(values.shape) != expected:
                raise ValueError(
                    f"pretrained matrix has shape {tuple(values.shape)}, "
                    f"the embedding table is {expected}"
                )
            self.weight.copy_(values)
            return
        index = torch.as_tensor(rows, dtype=torch.long)
        expected = (index.numel(), self.d_model)
        if index.dim() != 1 or tuple(values.shape) != expected:
            raise ValueError(
                f"pretrained matrix has shape {tuple(values.shape)}, expected {expected} "
                f"for {index.numel()} rows of a ({self.vocab_size}, {self.d_model}) table"
            )
        if index.numel() and (index.min() < 0 or index.max() >= self.vocab_size):
            raise ValueError(f"rows must be token ids in [0, {self.vocab_size})")
        self.weight.index_copy_(0, index.to(self.weight.device), values.to(self.weight.device))

    def extra_repr(self) -> str:
        return f"{self.vocab_size}, {self.d_model}, pad_id={self.pad_id}"


class OutputProjection(nn.Module):
    """Pre-softmax linear map (B, T, D) -> (B, T, V), without a bias unless asked for.

    With `tied_to` it reuses that embedding's matrix (section 3.4: the same weights for the
    embeddings and the pre-softmax transformation); otherwise it owns one, initialised like
    an embedding. `bias` adds a per-token bias (zeros at first): none in the paper, but
    Marian / OPUS-MT models carry one (`final_logits_bias`), and an import must keep it.
    """

    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        tied_to: TokenEmbedding | None = None,
        bias: bool = False,
    ):
        super().__init__()
        if tied_to is not None:
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
            nn.init.normal_(self.weight, mean=0.0, std=d_model**-0.5)
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., V) logits."""
        return F.linear(x, self.weight, self.bias)
