"""Whole-model invariants: causality, padding independence, cached decoding == full forward."""

import pytest
import torch
from torch.testing import assert_close

from transformer_mt.model import Transformer

from .conftest import random_model

PAD = 0


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """src (3, 7) right-padded to lengths 7, 5, 3; tgt_in (3, 6) without padding."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (3, 7), generator=generator)
    for row, length in enumerate((7, 5, 3)):
        src[row, length:] = PAD
    tgt = torch.randint(4, 50, (3, 6), generator=generator)
    return src, tgt


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_no_causal_leakage(pos_enc, norm_first):
    model = random_model(pos_enc=pos_enc, norm_first=norm_first)
    src, tgt = batch()
    changed = tgt.clone()
    changed[:, 3:] = torch.randint(4, 50, (3, 3))
    with torch.no_grad():
        before, after = model(src, tgt), model(src, changed)
    assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_padded_batch_equals_each_sentence_alone(pos_enc):
    model = random_model(pos_enc=pos_enc)
    src, tgt = batch()
    tgt_lengths = (6, 4, 2)
    padded_tgt = tgt.clone()
    for row, length in enumerate(tgt_lengths):
        padded_tgt[row, length:] = PAD
    with torch.no_grad():
        memory = model.encode(src).memory
        logits = model(src, padded_tgt)
        for row, (src_len, tgt_len) in enumerate(zip((7, 5, 3), tgt_lengths, strict=True)):
            alone_src, alone_tgt = src[row : row + 1, :src_len], tgt[row : row + 1, :tgt_len]
            assert_close(memory[row, :src_len], model.encode(alone_src).memory[0])
            assert_close(logits[row, :tgt_len], model(alone_src, alone_tgt)[0])


def decode_steps(model: Transformer, state, tokens: torch.Tensor) -> torch.Tensor:
    """Feed tokens (B, n) one step at a time -> logits (B, n, V)."""
    return torch.stack([model.decode_step(tokens[:, i], state) for i in range(tokens.size(1))], 1)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_cached_decoding_equals_full_forward(pos_enc, norm_first):
    model = random_model(pos_enc=pos_enc, norm_first=norm_first)
    src, tgt = batch()
    tgt = torch.cat([tgt, tgt[:, :4]], 1)  # 10 steps: more than one cache growth path
    with torch.no_grad():
        full = model(src, tgt)
        state = model.init_incremental_state(model.encode(src))
        cached = decode_steps(model, state, tgt)
    assert state.step == tgt.size(1)
    assert_close(cached, full)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("new_order", [[2, 0, 1], [2, 2, 0], [2, 0]], ids=str)
def test_reordered_cache_equals_fresh_forward_of_reordered_batch(pos_enc, norm_first, new_order):
    model = random_model(pos_enc=pos_enc, norm_first=norm_first)
    src, tgt = batch()
    order = torch.tensor(new_order)
    with torch.no_grad():
        state = model.init_incremental_state(model.encode(src))
        decode_steps(model, state, tgt[:, :3])
        model.reorder_incremental_state(state, order)
        assert state.batch_size == len(new_order)
        continued = decode_steps(model, state, tgt[order, 3:])
        fresh = model(src[order], tgt[order])
    assert_close(continued, fresh[:, 3:])


def test_beam_reorder_within_sentences_equals_fresh_forward():
    """Beams of one sentence swap (cross-attention K/V stay put), then a sentence finishes."""
    model = random_model(pos_enc="rope")
    src, tgt = batch()
    beam = 2
    expand = torch.arange(3).repeat_interleave(beam)  # rows 0,0,1,1,2,2
    tokens = (tgt[expand] + torch.arange(6)[:, None]) % 46 + 4  # each beam its own prefix
    swap, drop_middle = torch.tensor([1, 1, 3, 2, 4, 4]), torch.tensor([0, 1, 4, 5])
    with torch.no_grad():
        state = model.init_incremental_state(model.encode(src).index_select(expand))
        decode_steps(model, state, tokens[:, :2])
        model.reorder_incremental_state(state, swap)
        middle = decode_steps(model, state, tokens[swap, 2:4])
        model.reorder_incremental_state(state, drop_middle)
        last = decode_steps(model, state, tokens[swap][drop_middle, 4:])
        history = torch.cat([tokens[swap][:, :4], torch.zeros(6, 2, dtype=torch.long)], 1)
        history[drop_middle, 4:] = tokens[swap][drop_middle, 4:]
        fresh = model(src[expand][swap], history)
    assert_close(middle, fresh[:, 2:4])
    assert_close(last, fresh[drop_middle, 4:])


def test_cross_attention_keys_are_computed_once():
    model = random_model()
    src, tgt = batch()
    calls = []
    for layer in model.decoder.layers:
        layer.cross_attn.w_k.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        state = model.init_incremental_state(model.encode(src))
        decode_steps(model, state, tgt)
    assert len(calls) == len(model.decoder.layers)
