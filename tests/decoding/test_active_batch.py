"""Finished sentences leave the active batch: the model is asked for fewer rows, never more."""

import torch

from transformer_mt.decoding import beam_search, greedy_search

A = 4


def _quick_and_slow(make_prefix_decoder):
    # source starting with 1: EOS .9 / A .1 (stops at once); otherwise A .5 / B .499 /
    # EOS .001: an EOS candidate never ranks among the best 2, so it runs to the maximum length
    quick = torch.tensor([0, 0, 0, 0.9, 0.1, 0]).log()
    slow = torch.tensor([0, 0, 0, 0.001, 0.5, 0.499]).log()
    return make_prefix_decoder(lambda src, prefix: quick if src[0] == 1 else slow)


SRC = torch.tensor([[1, 3], [5, 3]])  # sentence 0 quick, sentence 1 slow; max length 0*2+5 = 5


def test_beam_finished_sentence_leaves_the_batch(make_prefix_decoder):
    decoder = _quick_and_slow(make_prefix_decoder)
    hyps = beam_search(decoder, SRC, beam_size=2, max_len_a=0, max_len_b=5, nbest=2)
    # quick sentence, beam 2: step 0 A (EOS blocked by min_len 1); step 1 finalizes A-EOS
    # (.1*.9); step 2 finalizes AA-EOS (.01*.9): 2 finalized -> done after 3 steps.
    assert [h.tokens for h in hyps[0]] == [[A], [A, A]]
    # rows per step: 1 per sentence at step 0, then 2 beams x 2 sentences, then only the slow
    # sentence's 2 beams for steps 3 and 4
    assert decoder.batch_sizes == [2, 4, 4, 2, 2]
    assert decoder.reorders[0] == [0, 0, 1, 1]  # step 0 expands each sentence to its 2 beams
    assert len(decoder.reorders[2]) == 2
    assert set(decoder.reorders[2]) <= {2, 3}  # rows of the slow sentence (rows 2, 3)
    assert len(hyps[1][0].tokens) == 4  # forced EOS at the maximum length 5


def test_greedy_finished_sentence_leaves_the_batch(make_prefix_decoder):
    decoder = _quick_and_slow(make_prefix_decoder)
    hyps = greedy_search(decoder, SRC, max_len_a=0, max_len_b=5)
    assert [h.tokens for h in hyps] == [[A], [A, A, A, A]]
    assert decoder.batch_sizes == [2, 2, 1, 1, 1]
    assert decoder.reorders == [[1]]  # once, when sentence 0 emits EOS at step 1
