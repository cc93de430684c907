"""Beam and greedy search on decoders with fixed probabilities; expected outputs worked by hand.

Vocabulary: PAD 0, UNK 1, BOS 2, EOS 3, A 4, B 5 (UNK, PAD, BOS get probability 0 unless listed).
"""

from math import log

import pytest
import torch

from transformer_mt.decoding import beam_search, greedy_search

A, B, EOS = 4, 5, 3
SRC = torch.tensor([[7, 8, 3]])  # one sentence; the scripted decoders ignore the source

# The tree behind the length-penalty and n-best tests (beam 3, max length 4 incl. EOS):
LENGTH_TREE = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS: 0.6, A: 0.4},
    (B,): {B: 0.8, EOS: 0.2},
    (A, A): {A: 0.8, B: 0.2},
    (B, B): {EOS: 0.94, A: 0.06},
    (A, A, A): {EOS: 0.95, A: 0.05},
    (A, A, B): {EOS: 1.0},
    (B, B, A): {EOS: 1.0},
}
# Trace with k = 3 (cumulative probabilities; EOS finalized when among the best 3 candidates):
# step 0: A .6, B .4                                   -> beams A, B (+ one dead beam at -inf)
# step 1: A-EOS .36, BB .32, AA .24, B-EOS .08         -> finalize A-EOS (rank 1); beams BB, AA
#         (B-EOS ranks 4th: dropped)
# step 2: BB-EOS .32*.94=.3008, AAA .24*.8=.192, AAB .24*.2=.048, BBA .32*.06=.0192
#                                                       -> finalize BB-EOS; beams AAA, AAB, BBA
# step 3 (max length 4: only EOS allowed): AAA-EOS .192*.95=.1824, AAB-EOS .048, BBA-EOS .0192
# Finalized, log p and length with EOS:
#   [A]      ln .36   = -1.02165, len 2
#   [B,B]    ln .3008 = -1.20131, len 3
#   [A,A,A]  ln .1824 = -1.70155, len 4
#   [A,A,B]  ln .048  = -3.03655, len 4
#   [B,B,A]  ln .0192 = -3.95284, len 4
FOUND = {
    (A,): log(0.6 * 0.6),
    (B, B): log(0.4 * 0.8 * 0.94),
    (A, A, A): log(0.6 * 0.4 * 0.8 * 0.95),
    (A, A, B): log(0.6 * 0.4 * 0.2 * 1.0),
    (B, B, A): log(0.4 * 0.8 * 0.06 * 1.0),
}


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        # alpha 0, raw log p: A -1.022 > BB -1.201 > AAA -1.702
        (0.0, [(A,), (B, B), (A, A, A)]),
        # alpha 1, per token: BB -1.201/3=-0.400 > AAA -1.702/4=-0.425 > A -1.022/2=-0.511
        (1.0, [(B, B), (A, A, A), (A,)]),
        # alpha 2: AAA -1.702/16=-0.106 > BB -1.201/9=-0.133 > AAB -3.037/16=-0.190
        #          (> BBA -3.953/16=-0.247 > A -1.022/4=-0.255)
        (2.0, [(A, A, A), (B, B), (A, A, B)]),
    ],
)
def test_length_penalty_changes_the_winner_and_nbest_order(make_scripted, alpha, expected):
    hyps = beam_search(
        make_scripted(LENGTH_TREE), SRC, beam_size=3, len_penalty=alpha,
        max_len_a=0, max_len_b=4, nbest=3,
    )[0]  # fmt: skip
    assert [tuple(h.tokens) for h in hyps] == expected
    for h in hyps:
        log_prob = FOUND[tuple(h.tokens)]
        assert h.log_prob == pytest.approx(log_prob, abs=1e-5)
        assert h.score == pytest.approx(log_prob / (len(h.tokens) + 1) ** alpha, abs=1e-5)


def test_positional_scores_are_per_token_log_probs(make_scripted):
    best = beam_search(
        make_scripted(LENGTH_TREE), SRC, beam_size=3, len_penalty=2.0, max_len_a=0, max_len_b=4
    )[0][0]
    assert best.tokens == [A, A, A]
    expected = [log(0.6), log(0.4), log(0.8), log(0.95)]  # A, A, A, EOS
    assert best.positional_scores == pytest.approx(expected, abs=1e-6)


def test_beam_stops_at_k_finalized_before_max_length(make_scripted):
    # beam 2 on the same tree: step 1 finalizes A-EOS; step 2 finalizes BB-EOS (.3008, rank 1),
    # which makes 2 = k finalized: the sentence stops and AAA is never completed.
    hyps = beam_search(
        make_scripted(LENGTH_TREE), SRC, beam_size=2, len_penalty=2.0,
        max_len_a=0, max_len_b=4, nbest=2,
    )[0]  # fmt: skip
    # alpha 2: BB -1.201/9=-0.133 > A -1.022/4=-0.255
    assert [h.tokens for h in hyps] == [[B, B], [A]]


def _never_stop(make_prefix_decoder):
    # Every prefix: A .9, EOS .1 -- the model never wants to stop.
    return make_prefix_decoder(lambda src, prefix: torch.tensor([0, 0, 0, 0.1, 0.9, 0]).log())


def test_max_length_forces_eos_per_sentence(make_prefix_decoder):
    # source lengths 3 and 4 (PAD not counted); a=0.5, b=1:
    # floor(0.5*3+1) = floor(2.5) = 2 tokens with EOS, floor(0.5*4+1) = 3.
    src = torch.tensor([[7, 8, 3, 0], [7, 8, 9, 3]])
    greedy = greedy_search(_never_stop(make_prefix_decoder), src, max_len_a=0.5, max_len_b=1)
    assert [h.tokens for h in greedy] == [[A], [A, A]]
    # the EOS at the limit is scored with its own probability .1, not the preferred A's .9
    assert greedy[0].log_prob == pytest.approx(log(0.9) + log(0.1), abs=1e-6)
    assert greedy[1].log_prob == pytest.approx(2 * log(0.9) + log(0.1), abs=1e-6)

    beams = beam_search(
        _never_stop(make_prefix_decoder), src, beam_size=2, max_len_a=0.5, max_len_b=1, nbest=2
    )
    # sentence 0: only A-EOS exists (the second beam is dead at -inf and is never finalized).
    assert [h.tokens for h in beams[0]] == [[A]]
    # sentence 1: step 1 finalizes A-EOS (.09, rank 2 of {AA .81, A-EOS .09}); step 2 forces
    # AA-EOS .081. alpha 1: AA ln(.081)/3 = -0.838 > A ln(.09)/2 = -1.204.
    assert [h.tokens for h in beams[1]] == [[A, A], [A]]
    assert [h.score for h in beams[1]] == pytest.approx([log(0.081) / 3, log(0.09) / 2], abs=1e-5)


def _eager_stop(make_prefix_decoder):
    # Every prefix: EOS .7, A .3 -- the model wants to stop at once.
    return make_prefix_decoder(lambda src, prefix: torch.tensor([0, 0, 0, 0.7, 0.3, 0]).log())


@pytest.mark.parametrize(
    ("min_len", "tokens", "log_prob"),
    [
        (0, [], log(0.7)),  # an empty output is allowed
        (1, [A], log(0.3) + log(0.7)),
        (2, [A, A], 2 * log(0.3) + log(0.7)),  # EOS blocked at steps 0 and 1, not renormalized
    ],
)
def test_min_len_blocks_eos_greedy(make_prefix_decoder, min_len, tokens, log_prob):
    hyp = greedy_search(_eager_stop(make_prefix_decoder), SRC, min_len=min_len)[0]
    assert hyp.tokens == tokens
    assert hyp.log_prob == pytest.approx(log_prob, abs=1e-6)


def test_min_len_blocks_eos_beam(make_prefix_decoder):
    # beam 2, min_len 2, max 4: step 0 A .3; step 1 AA .09 (EOS blocked);
    # step 2 AA-EOS .063 finalized, AAA .027 lives; step 3 forced AAA-EOS .0189.
    # alpha 1: AA ln(.063)/3 = -0.921 > AAA ln(.0189)/4 = -0.992
    hyps = beam_search(
        _eager_stop(make_prefix_decoder), SRC, beam_size=2, min_len=2,
        max_len_a=0, max_len_b=4, nbest=2,
    )[0]  # fmt: skip
    assert [h.tokens for h in hyps] == [[A, A], [A, A, A]]
    assert [h.log_prob for h in hyps] == pytest.approx([log(0.063), log(0.0189)], abs=1e-5)


def test_max_length_overrides_min_len(make_prefix_decoder):
    # max length 2 (1 token + EOS) wins over min_len 3: EOS is forced at the last position
    hyp = greedy_search(_eager_stop(make_prefix_decoder), SRC, min_len=3, max_len_a=0, max_len_b=2)
    assert hyp[0].tokens == [A]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"beam_size": 2, "nbest": 3}, "nbest"),
        ({"min_len": -1}, "min_len"),
        ({"max_len_a": -0.5}, "max_len_a"),
    ],
)
def test_bad_arguments_are_rejected(make_scripted, kwargs, message):
    with pytest.raises(ValueError, match=message):
        beam_search(make_scripted(LENGTH_TREE), SRC, **kwargs)


def test_empty_batch(make_scripted):
    empty = torch.empty(0, 3, dtype=torch.long)
    assert beam_search(make_scripted(LENGTH_TREE), empty) == []
    assert greedy_search(make_scripted(LENGTH_TREE), empty) == []
