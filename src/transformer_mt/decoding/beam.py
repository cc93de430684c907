"""Batched beam search over sentences x beams; finished sentences leave the active batch.

Stopping rule (fairseq's `SequenceGenerator`), with k = beam_size:
1. Every live beam of a sentence is extended by every allowed token, and the 2k best candidates
   by cumulative log-probability are kept (fewer when the vocabulary is tiny).
2. A candidate ending in EOS is *finalized* when it ranks among the best k of them; an EOS
   ranked lower is already beaten by k live or finished candidates and is dropped.
3. The next beams are the best k candidates that do not end in EOS.
4. A sentence is finished as soon as it has at least k finalized hypotheses, or when it reaches
   its maximum length `floor(max_len_a * src_len + max_len_b)` (EOS included), where only EOS is
   allowed so every live beam is finalized. It then leaves the batch: the model is asked to keep
   only the rows of the surviving sentences, never to recompute anything.
5. At the end the finalized hypotheses of each sentence are ranked by
   `log_prob / len ** len_penalty` (len includes EOS) and the `nbest` best are returned.
The search compares raw cumulative log-probabilities, so len_penalty changes the ranking of
the hypotheses found, never which ones are found (as in fairseq). Unlike fairseq, every
finalized hypothesis is kept (a step may take a sentence past k), so the n-best is chosen among
all of them. Equal scores keep finalization order: earlier step first, then higher raw score.
The first step runs one row per sentence (all beams would be identical) and the state is then
expanded to k rows by `reorder_incremental_state` with repeated indices. The beams of a sentence
stay adjacent rows and later reorders move rows only within a sentence (or drop whole
sentences), so a model can keep one copy of per-sentence state, such as the Transformer's
cross-attention keys and values, for all of its beams.
"""

from typing import NamedTuple

import torch
from torch import Tensor

from transformer_mt.constants import BOS_ID, EOS_ID
from transformer_mt.decoding.constraints import check_lengths, max_output_lengths, step_log_probs
from transformer_mt.decoding.hypothesis import Hypothesis, finished_hypothesis
from transformer_mt.decoding.protocol import IncrementalDecoder


class _Beams(NamedTuple):
    """Live hypotheses of the Ba active sentences, n beams each."""

    sent_ids: Tensor  # (Ba,) input row of each active sentence
    max_lens: Tensor  # (Ba,) output length limit, EOS included
    num_final: Tensor  # (Ba,) finalized hypotheses so far
    tokens: Tensor  # (Ba, n, t) tokens produced (no BOS)
    token_scores: Tensor  # (Ba, n, t) log p of each
    scores: Tensor  # (Ba, n) cumulative log p


class _Candidates(NamedTuple):
    """The c <= 2k best one-token extensions of each active sentence, best first."""

    scores: Tensor  # (Ba, c) cumulative log p
    beams: Tensor  # (Ba, c) beam extended
    tokens: Tensor  # (Ba, c) token appended
    token_scores: Tensor  # (Ba, c) its log p
    final: Tensor  # (Ba, c) bool: finalized here (EOS, finite, among the best k)
    next_idx: Tensor  # (Ba, n') positions of the next beams (best non-EOS), n' <= k


class _Final(NamedTuple):
    """Hypotheses finalized at one step."""

    sent_ids: Tensor  # (m,)
    tokens: Tensor  # (m, t) without EOS
    token_scores: Tensor  # (m, t + 1) EOS last
    log_probs: Tensor  # (m,)


def _prune(lprobs: Tensor, scores: Tensor, beam_size: int) -> _Candidates:
    """Top-2k extensions, which of them are finalized, and which become the next beams.

    lprobs `(Ba * n, V)` constrained log-probs of the next token; scores `(Ba, n)` cumulative.
    Each beam's own top-2k tokens are taken first (adding the beam's score does not change the
    order within a row, and the sentence's best 2k all lie among them), so the full
    `(Ba, n * V)` sum is never formed.
    """
    num_active, n = scores.shape
    per_beam = min(2 * beam_size, lprobs.size(-1))
    beam_lp, beam_tok = lprobs.topk(per_beam, dim=1)  # (Ba * n, per_beam)
    cand = (scores.view(-1, 1) + beam_lp).view(num_active, n * per_beam)
    c = min(2 * beam_size, n * per_beam)
    top_scores, flat = cand.topk(c, dim=1)  # (Ba, c), sorted best first
    tokens = beam_tok.view(num_active, -1).gather(1, flat)
    is_eos = tokens == EOS_ID
    rank = torch.arange(c, device=lprobs.device)
    final = is_eos & (rank < beam_size) & top_scores.isfinite()
    # at most n candidates end in EOS, so at least c - n do not; take them in rank order
    next_idx = (is_eos * c + rank).topk(min(beam_size, c - n), dim=1, largest=False).indices
    token_scores = beam_lp.view(num_active, -1).gather(1, flat)
    return _Candidates(top_scores, flat // per_beam, tokens, token_scores, final, next_idx)


def _collect_final(beams: _Beams, cand: _Candidates) -> _Final | None:
    """Gather the hypotheses finalized at this step, or None when there are none."""
    rows, cols = cand.final.nonzero(as_tuple=True)  # (m,), (m,)
    if rows.numel() == 0:
        return None
    src_beam = cand.beams[rows, cols]
    eos_scores = cand.token_scores[rows, cols].unsqueeze(1)  # (m, 1)
    return _Final(
        beams.sent_ids[rows],
        beams.tokens[rows, src_beam],
        torch.cat([beams.token_scores[rows, src_beam], eos_scores], dim=1),
        cand.scores[rows, cols],
    )


def _advance(
    beams: _Beams, cand: _Candidates, keep: Tensor, num_final: Tensor
) -> tuple[_Beams, Tensor, Tensor]:
    """Next beams of the sentences in `keep` `(Ba',)`.

    Returns the new beams, the next input tokens `(Ba' * n',)` and the row order `(Ba' * n',)`
    the model's state must be reordered to.
    """
    n = beams.scores.size(1)
    next_idx = cand.next_idx[keep]  # (Ba', n')
    src_beam = cand.beams[keep].gather(1, next_idx)  # (Ba', n')
    new_order = (keep.unsqueeze(1) * n + src_beam).view(-1)  # (Ba' * n',)
    next_tokens = cand.tokens[keep].gather(1, next_idx)  # (Ba', n')
    rows = keep.unsqueeze(1)  # (Ba', 1)
    new_beams = _Beams(
        beams.sent_ids[keep],
        beams.max_lens[keep],
        num_final[keep],
        torch.cat([beams.tokens[rows, src_beam], next_tokens.unsqueeze(2)], dim=2),
        torch.cat(
            [
                beams.token_scores[rows, src_beam],
                cand.token_scores[keep].gather(1, next_idx)[..., None],
            ],
            dim=2,
        ),
        cand.scores[keep].gather(1, next_idx),
    )
    return new_beams, next_tokens.view(-1), new_order


def _nbest(
    finals: list[_Final], batch_size: int, nbest: int, len_penalty: float
) -> list[list[Hypothesis]]:
    """Rank each sentence's finalized hypotheses by normalized score; keep the `nbest` best."""
    pool: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    for final in finals:
        for sent, tokens, token_scores, log_prob in zip(
            final.sent_ids.tolist(),
            final.tokens.tolist(),
            final.token_scores.tolist(),
            final.log_probs.tolist(),
            strict=True,
        ):
            pool[sent].append(finished_hypothesis(tokens, token_scores, log_prob, len_penalty))
    # sorted() is stable: equal scores keep finalization order
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in pool]


@torch.inference_mode()
def beam_search(
    model: IncrementalDecoder,
    src_ids: Tensor,
    *,
    beam_size: int = 5,
    len_penalty: float = 1.0,
    max_len_a: float = 1.2,
    max_len_b: float = 10,
    min_len: int = 1,
    nbest: int = 1,
    max_len: int | None = None,
) -> list[list[Hypothesis]]:
    """Beam search for a PAD-padded batch `src_ids` `(B, S)`; per sentence the n-best, best first.

    See the module docstring for the exact stopping rule. EOS is forbidden before `min_len`
    tokens have been produced; PAD and BOS are never produced. A sentence gets fewer than
    `nbest` hypotheses only when fewer could be found (a vocabulary with fewer than k
    producible tokens leaves beams at -inf, which are carried but never finalized). `max_len`
    caps every sentence's length limit (EOS included), e.g. at what the model can represent.
    The caller puts the model in eval mode.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be in [1, beam_size={beam_size}], got {nbest}")
    check_lengths(max_len_a, max_len_b, min_len, max_len)
    batch_size = src_ids.size(0)
    if batch_size == 0:
        return []
    max_lens = max_output_lengths(src_ids, max_len_a, max_len_b, max_len)  # (B,)
    state = model.init_incremental_state(model.encode(src_ids), int(max_lens.max()))
    device = src_ids.device
    empty = torch.empty(batch_size, 1, 0, device=device)
    beams = _Beams(
        torch.arange(batch_size, device=device),
        max_lens,
        torch.zeros_like(max_lens),
        empty.long(),
        empty,
        torch.zeros(batch_size, 1, device=device),
    )
    prev = src_ids.new_full((batch_size,), BOS_ID)
    finals: list[_Final] = []
    for step in range(int(max_lens.max())):
        at_max = beams.max_lens - 1 <= step  # (Ba,)
        n = beams.scores.size(1)
        logits = model.decode_step(prev, state)  # (Ba * n, V)
        lprobs = step_log_probs(logits, step, min_len, at_max.repeat_interleave(n))
        cand = _prune(lprobs, beams.scores, beam_size)
        final = _collect_final(beams, cand)
        if final is not None:
            finals.append(final)
        num_final = beams.num_final + cand.final.sum(dim=1)  # (Ba,)
        keep = ((num_final < beam_size) & ~at_max).nonzero().squeeze(1)  # (Ba',)
        if keep.numel() == 0:
            break
        beams, prev, new_order = _advance(beams, cand, keep, num_final)
        model.reorder_incremental_state(state, new_order)
    return _nbest(finals, batch_size, nbest, len_penalty)
