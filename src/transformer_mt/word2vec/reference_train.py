"""A small trainer around the reference steps, to show they learn on a real corpus.

Minibatch SGD over all (centre, context) windows of a corpus, negatives drawn from the unigram
distribution raised to 3/4 (Mikolov et al., 2013, section 2.2). No frequent-word subsampling and
no learning-rate decay beyond a linear one: the point is correctness, gensim is the fast path.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_mt.word2vec.reference import cbow_step, skipgram_step


@dataclass(frozen=True)
class Windows:
    """Every position of a corpus with its context window; C = 2 * window."""

    centres: Tensor  # (N,) long
    contexts: Tensor  # (N, C) long, 0 where masked
    mask: Tensor  # (N, C) bool, False outside the sentence


def context_windows(sentences: Sequence[Sequence[int]], window: int) -> Windows:
    """All positions with at least one context word; offsets -window..-1, 1..window."""
    offsets = [o for o in range(-window, window + 1) if o != 0]
    centres, contexts, masks = [], [], []
    for sent in sentences:
        n = len(sent)
        for i in range(n):
            ctx = [sent[i + o] if 0 <= i + o < n else 0 for o in offsets]
            mask = [0 <= i + o < n for o in offsets]
            if any(mask):
                centres.append(sent[i])
                contexts.append(ctx)
                masks.append(mask)
    return Windows(
        centres=torch.tensor(centres, dtype=torch.long),
        contexts=torch.tensor(contexts, dtype=torch.long).reshape(-1, len(offsets)),
        mask=torch.tensor(masks, dtype=torch.bool).reshape(-1, len(offsets)),
    )


def noise_distribution(sentences: Sequence[Sequence[int]], vocab_size: int) -> Tensor:
    """Unigram counts ** 0.75, normalised: (V,). Rare words get sampled more than their share."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for sent in sentences:
        counts.index_add_(
            0, torch.tensor(sent, dtype=torch.long), torch.ones(len(sent), dtype=torch.float64)
        )
    weights = counts**0.75
    return (weights / weights.sum()).float()


@dataclass(frozen=True)
class ReferenceResult:
    W_in: Tensor  # (V, d) the embeddings
    W_out: Tensor  # (V, d)
    epoch_losses: list[float]  # mean loss per example, per epoch


def train_reference(
    sentences: Sequence[Sequence[int]],
    vocab_size: int,
    d: int,
    *,
    skip_gram: bool,
    window: int = 3,
    negative: int = 5,
    epochs: int = 5,
    lr: float = 0.025,
    batch_size: int = 64,
    seed: int = 0,
) -> ReferenceResult:
    """Train skip-gram or CBOW with the reference steps; sentences are lists of word ids.

    Initialisation as word2vec: W_in uniform in ±0.5/d, W_out zero. The learning rate decays
    linearly to 0 over the run. Skip-gram expands each window into one example per context word.
    """
    gen = torch.Generator().manual_seed(seed)
    W_in = (torch.rand(vocab_size, d, generator=gen) - 0.5) / d
    W_out = torch.zeros(vocab_size, d)
    win = context_windows(sentences, window)
    noise = noise_distribution(sentences, vocab_size)
    if skip_gram:  # one (centre, context) example per unmasked context slot
        centres = win.centres[:, None].expand_as(win.contexts)[win.mask]  # (N',)
        targets = win.contexts[win.mask]  # (N',)
    num_examples = len(centres) if skip_gram else len(win.centres)
    total_steps, step, losses = epochs * ((num_examples + batch_size - 1) // batch_size), 0, []
    for _ in range(epochs):
        order, epoch_loss = torch.randperm(num_examples, generator=gen), 0.0
        for batch in order.split(batch_size):
            rate = lr * (1.0 - step / total_steps)
            negatives = torch.multinomial(
                noise, len(batch) * negative, replacement=True, generator=gen
            )
            negatives = negatives.reshape(len(batch), negative)  # (B, K)
            if skip_gram:
                out = skipgram_step(W_in, W_out, centres[batch], targets[batch], negatives, rate)
            else:
                b = win
                out = cbow_step(
                    W_in, W_out, b.contexts[batch], b.mask[batch], b.centres[batch], negatives, rate
                )
            W_in, W_out, step = out.W_in_new, out.W_out_new, step + 1
            epoch_loss += out.loss.item()
        losses.append(epoch_loss / num_examples)
    return ReferenceResult(W_in=W_in, W_out=W_out, epoch_losses=losses)
