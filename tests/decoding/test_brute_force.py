"""Beam search against exhaustive enumeration, beam 1 against greedy, batch against alone.

The decoder's distribution depends on the source and the whole prefix (a seeded random table),
with vocabulary 6 of which UNK, EOS, A, B may be produced.
"""

import itertools

import pytest
import torch

from transformer_mt.decoding import beam_search, greedy_search

UNK, EOS, A, B = 1, 3, 4, 5
PRODUCIBLE = (UNK, A, B)  # besides EOS; PAD and BOS are never produced

# source lengths 1, 2, 3 with max_len_a=1, max_len_b=1 give maximum lengths 2, 3, 4 (EOS incl.)
SRC = torch.tensor([[9, 0, 0], [9, 8, 0], [7, 8, 9]])


def enumerate_outputs(decoder, src: tuple[int, ...], max_len: int, min_len: int, alpha: float):
    """Every output the constraints allow, with log p and normalized score, best first.

    Log-probs are the model's own (PAD/BOS mass not renormalized away); EOS must come after at
    least min_len tokens and at the latest as token number max_len.
    """
    outputs = []
    for length in range(min_len, max_len):
        for tokens in itertools.product(PRODUCIBLE, repeat=length):
            log_p = sum(float(decoder.log_probs(src, tokens[:i])[t]) for i, t in enumerate(tokens))
            log_p += float(decoder.log_probs(src, tokens)[EOS])
            outputs.append((list(tokens), log_p, log_p / (length + 1) ** alpha))
    return sorted(outputs, key=lambda o: -o[2])


@pytest.mark.parametrize(("alpha", "min_len", "seed"), [(0.0, 1, 0), (1.0, 1, 1), (1.0, 0, 2)])
def test_exhaustive_beam_equals_brute_force(make_random, alpha, min_len, seed):
    # At most 3**2 = 9 live prefixes x 4 tokens = 36 finite candidates per step: a beam of 36
    # keeps every one (2k = 72 candidates, all EOS ranked within the best k), and fewer than 36
    # hypotheses are finalized before the last step, so nothing is pruned.
    decoder = make_random(seed)
    hyps = beam_search(
        decoder, SRC, beam_size=36, len_penalty=alpha, min_len=min_len,
        max_len_a=1, max_len_b=1, nbest=5,
    )  # fmt: skip
    for row, max_len in enumerate([2, 3, 4]):
        src = tuple(t for t in SRC[row].tolist() if t != 0)
        expected = enumerate_outputs(decoder, src, max_len, min_len, alpha)[:5]
        assert [h.tokens for h in hyps[row]] == [tokens for tokens, _, _ in expected]
        assert [h.log_prob for h in hyps[row]] == pytest.approx(
            [lp for _, lp, _ in expected], abs=1e-5
        )
        assert [h.score for h in hyps[row]] == pytest.approx([s for _, _, s in expected], abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(make_random, seed):
    src = torch.tensor([[5, 6, 7, 8], [5, 0, 0, 0], [9, 9, 0, 0], [4, 4, 4, 0]])
    kwargs = {"max_len_a": 1.0, "max_len_b": 3, "min_len": 1, "len_penalty": 0.6}
    greedy = greedy_search(make_random(seed), src, **kwargs)
    beam = [nbest[0] for nbest in beam_search(make_random(seed), src, beam_size=1, **kwargs)]
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.log_prob for h in beam] == pytest.approx([h.log_prob for h in greedy], abs=1e-5)
    assert [h.score for h in beam] == pytest.approx([h.score for h in greedy], abs=1e-5)
    for b, g in zip(beam, greedy, strict=True):
        assert b.positional_scores == pytest.approx(g.positional_scores, abs=1e-6)


def test_batch_gives_each_sentence_its_result_alone(make_random):
    src = torch.tensor([[5, 6, 7, 8, 9], [5, 0, 0, 0, 0], [9, 9, 0, 0, 0], [4, 4, 4, 3, 0]])
    kwargs = {"max_len_a": 1.0, "max_len_b": 2, "len_penalty": 1.0}
    batched = beam_search(make_random(3), src, beam_size=3, nbest=3, **kwargs)
    greedy = greedy_search(make_random(3), src, **kwargs)
    for row in range(src.size(0)):
        alone = src[row : row + 1, : int((src[row] != 0).sum())]  # (1, len) without padding
        single = beam_search(make_random(3), alone, beam_size=3, nbest=3, **kwargs)[0]
        assert [h.tokens for h in batched[row]] == [h.tokens for h in single]
        assert [h.score for h in batched[row]] == pytest.approx([h.score for h in single], abs=1e-6)
        assert greedy[row].tokens == greedy_search(make_random(3), alone, **kwargs)[0].tokens
