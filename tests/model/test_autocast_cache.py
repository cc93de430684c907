"""Under bf16 autocast the decoding cache is kept in the compute dtype (bf16), not in the fp32
of the encoder memory: half the memory and no cast of the whole cache at every step."""

import pytest
import torch

from transformer_mt.model import Transformer, TransformerConfig
from transformer_mt.model.transformer import compute_dtype

KINDS = ["sinusoidal", "learned", "rope", "alibi", "relative", "none"]


def model(pos_enc: str, norm_first: bool) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(src_vocab_size=30, tgt_vocab_size=30, d_model=16, d_ff=32,
                               num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                               dropout=0.0, pos_enc=pos_enc, norm_first=norm_first)  # fmt: skip
    return Transformer(config).eval()


def cached(state) -> dict[str, torch.Tensor]:
    store = state.self_attn
    return {"self K/V": store._storage, "self K/V spare": store._spare,  # noqa: SLF001
            "cross K": state.cross_k, "cross V": state.cross_v}  # fmt: skip


@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
@pytest.mark.parametrize("pos_enc", KINDS)
def test_every_cached_tensor_is_bf16_and_steps_match_the_full_pass(pos_enc, norm_first):
    m = model(pos_enc, norm_first)
    src = torch.randint(4, 30, (4, 7))
    tgt = torch.randint(4, 30, (4, 6))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        enc = m.encode(src)
        assert enc.memory.dtype == torch.float32  # why the cache took fp32 before
        state = m.init_incremental_state(enc, capacity=2)  # grows during the 6 steps
        steps = []
        for t in range(tgt.size(1)):
            steps.append(m.decode_step(tgt[:, t], state))
            if t == 2:  # beams reorder: keep rows 1, 1, 3, 0
                m.reorder_incremental_state(state, torch.tensor([1, 1, 3, 0]))
                tgt, enc = tgt[[1, 1, 3, 0]], enc.index_select(torch.tensor([1, 1, 3, 0]))
                steps = [s[[1, 1, 3, 0]] for s in steps]
        full = m.decode(tgt, enc)  # (B, T, V)
    for name, tensor in cached(state).items():
        assert tensor.dtype == torch.bfloat16, name
    incremental = torch.stack(steps, dim=1).float()
    torch.testing.assert_close(incremental, full.float(), atol=0.1, rtol=0.05)


def test_compute_dtype_follows_autocast():
    x = torch.zeros(2)
    assert compute_dtype(x) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compute_dtype(x) == torch.bfloat16
    assert compute_dtype(x.double()) == torch.float64
