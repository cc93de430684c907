"""Batching: padding from flat arrays, token budget, per-epoch shuffle, DDP shards."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.batching import (
    TokenBatchSampler,
    collate,
    length_sorted_batches,
    split_to_multiple,
)


def _flat(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return np.array([t for s in seqs for t in s], dtype=np.uint16), offsets


def test_collate_matches_hand_built_padding():
    src = [[5, 6, EOS_ID], [7, EOS_ID], [8, 9, 10, 11, EOS_ID]]
    tgt = [[20, 21], [22, 23, 24], []]
    batch = collate(*_flat(src), *_flat(tgt), np.array([2, 0, 1]))
    P, B, E = PAD_ID, BOS_ID, EOS_ID
    assert batch.src_ids.tolist() == [[8, 9, 10, 11, E], [5, 6, E, P, P], [7, E, P, P, P]]
    assert batch.tgt_in_ids.tolist() == [[B, P, P, P], [B, 20, 21, P], [B, 22, 23, 24]]
    assert batch.tgt_out_ids.tolist() == [[E, P, P, P], [20, 21, E, P], [22, 23, 24, E]]
    assert batch.indices.tolist() == [2, 0, 1] and batch.num_tgt_tokens == 1 + 3 + 4
    assert batch.src_ids.dtype == batch.tgt_in_ids.dtype == batch.indices.dtype


def _random_lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(2, 60, n)
    return src, np.clip(src + rng.integers(-8, 9, n), 2, None)


@pytest.mark.parametrize("max_sentences", [None, 16])
def test_batches_respect_budget_and_are_greedy_maximal(max_sentences):
    src, tgt = _random_lengths(3000)
    sizes = np.maximum(src, tgt)
    order = np.argsort(sizes, kind="stable")
    batches = length_sorted_batches(order, sizes, 1000, max_sentences)
    assert np.array_equal(np.concatenate(batches), order)
    for b, nxt in zip(batches, batches[1:] + [None], strict=True):
        assert len(b) * sizes[b].max() <= 1000 and len(b) <= (max_sentences or len(b))
        if nxt is not None:  # one more pair would break the budget or the cap
            grown = np.append(b, nxt[0])
            assert len(grown) * sizes[grown].max() > 1000 or len(grown) > (max_sentences or 1e9)


def test_oversized_pair_gets_its_own_batch():
    sizes = np.array([3, 3, 50])
    assert [b.tolist() for b in length_sorted_batches(np.arange(3), sizes, 10, None)] == [
        [0, 1], [2],
    ]  # fmt: skip


def test_split_to_multiple_never_repeats():
    batches = [np.arange(0, 5), np.arange(5, 6), np.arange(6, 9)]
    out = split_to_multiple(batches, 4)
    assert len(out) == 4 and sorted(np.concatenate(out).tolist()) == list(range(9))


def _epoch(sampler: TokenBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return [b.tolist() for b in sampler]


def test_training_order_is_seeded_per_epoch_and_covers_every_pair_once():
    src, tgt = _random_lengths(2000)
    keep = np.flatnonzero(np.maximum(src, tgt) <= 50)
    make = lambda seed: TokenBatchSampler(src, tgt, 800, seed=seed, keep=keep)  # noqa: E731
    e0, e1 = _epoch(make(3), 0), _epoch(make(3), 1)
    assert e0 == _epoch(make(3), 0)  # deterministic
    assert e0 != e1 and e0 != _epoch(make(4), 0)  # reshuffled per epoch and per seed
    for epoch in (e0, e1):
        assert sorted(i for b in epoch for i in b) == keep.tolist()


@pytest.mark.parametrize("world_size", [2, 3, 8])
@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_get_disjoint_shares_and_equal_steps(world_size: int, shuffle: bool):
    src, tgt = _random_lengths(1001)
    shards = [
        _epoch(TokenBatchSampler(src, tgt, 700, shuffle=shuffle, rank=r, world_size=world_size), 5)
        for r in range(world_size)
    ]
    assert len({len(shard) for shard in shards}) == 1  # same number of steps on every rank
    seen = [i for shard in shards for b in shard for i in b]
    assert sorted(seen) == list(range(1001))  # disjoint and complete: no duplicate for BLEU


def test_eval_order_is_fixed_across_epochs():
    src, tgt = _random_lengths(500)
    sampler = TokenBatchSampler(src, tgt, 600, shuffle=False)
    assert _epoch(sampler, 0) == _epoch(sampler, 7)


def test_length_bucketing_pads_less_than_random_batches():
    src, tgt = _random_lengths(5000)

    def pad_fraction(batches) -> float:
        real = sum(src[b].sum() + tgt[b].sum() for b in batches)
        padded = sum(len(b) * (src[b].max() + tgt[b].max()) for b in batches)
        return 1 - real / padded

    bucketed = list(TokenBatchSampler(src, tgt, 2000))
    random = np.array_split(np.random.default_rng(0).permutation(5000), len(bucketed))
    assert pad_fraction(bucketed) < 0.25 * pad_fraction(random)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="rank=2"):
        TokenBatchSampler(np.ones(3), np.ones(3), 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="max_tokens=0"):
        TokenBatchSampler(np.ones(3), np.ones(3), 0)


@pytest.mark.parametrize("world_size", [1, 3])
@pytest.mark.parametrize("consumed", [0, 1, 7])
def test_restored_sampler_yields_exactly_the_remaining_batches(world_size: int, consumed: int):
    src, tgt = _random_lengths(1500)
    make = lambda rank: TokenBatchSampler(src, tgt, 700, seed=5, rank=rank, world_size=world_size)  # noqa: E731
    interrupted = make(0)
    interrupted.set_epoch(2)
    taken = [b.tolist() for b in islice(interrupted, consumed)]
    state = interrupted.state_dict()  # rank 0's: every rank has consumed as many batches
    for rank in range(world_size):
        full, resumed = make(rank), make(rank)
        resumed.load_state_dict(state)  # a fresh process: the epoch comes from the state
        remaining = [b.tolist() for b in resumed]
        if rank == 0:
            assert taken + remaining == _epoch(full, 2)
        assert remaining == _epoch(full, 2)[consumed:]
        assert _epoch(resumed, 3) == _epoch(full, 3)  # later epochs start at their first batch
        assert _epoch(resumed, 2) == _epoch(full, 2)  # the restored position is used once


def test_restoring_a_state_from_other_batches_is_refused():
    src, tgt = _random_lengths(300)
    state = TokenBatchSampler(src, tgt, 700, seed=1).state_dict()
    with pytest.raises(ValueError, match=r"world_size\) = .* differ from this run's"):
        TokenBatchSampler(src, tgt, 700, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="end-of-epoch checkpoint"):
        TokenBatchSampler(src, tgt, 700, seed=1, world_size=2).load_state_dict(state)
