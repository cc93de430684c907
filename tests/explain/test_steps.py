"""Every step of the tutorial is there for a d_model = 4 model, in the layer's order, with the
paper's shapes, and each matrix relates to the previous ones as the formulas say."""

import math

import pytest
import torch
from torch.testing import assert_close

from transformer_mt.constants import EOS_ID
from transformer_mt.decoding import BeamSearch, GreedySearch
from transformer_mt.explain import explain

from .conftest import PE_KINDS, SHORT_GREEDY, TEXT, perturbed_tiny

D, H, D_K, D_FF = 4, 2, 2, 8


def attention_names(act: str, par: str, cross: bool) -> list[str]:
    names = [f"{act}.input"] + ([f"{act}.memory"] if cross else [])
    for i in range(H):
        names += [f"{par}.head{i}.{w}" for w in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")]
        names += [f"{act}.head{i}.{m}" for m in ("Q", "K", "V", "scores", "mask", "probs")]
        names.append(f"{act}.head{i}.context")
    return names + [f"{act}.concat", f"{par}.W_O", f"{par}.b_O", f"{act}.output"]


FFN = ("input", "hidden", "output")
FFN_PARAMS = ("W_1", "b_1", "W_2", "b_2")


def layer_names(act: str, par: str, decoder: bool) -> list[str]:
    names = attention_names(f"{act}.self_attn", f"{par}.self_attn", cross=False)
    if decoder:
        names += attention_names(f"{act}.cross_attn", f"{par}.cross_attn", cross=True)
    names += [f"{act}.ffn.{n}" for n in FFN] + [f"{par}.ffn.{n}" for n in FFN_PARAMS]
    for k in range(1, 4 if decoder else 3):
        names += [f"{act}.residual{k}", f"{act}.norm{k}.output"]
        names += [f"{par}.norm{k}.gamma", f"{par}.norm{k}.beta"]
    return names


def pe_names(act: str, pos_enc: str) -> list[str]:
    if pos_enc in ("sinusoidal", "learned"):
        return [f"{act}.pe.PE"]
    if pos_enc == "rope":
        return [f"{act}.pe.rope.cos", f"{act}.pe.rope.sin"]
    if pos_enc in ("alibi", "relative"):
        return [f"{act}.pe.bias.head{i}" for i in range(H)]
    return []


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("pos_enc", PE_KINDS)
def test_every_step_is_present(pos_enc, norm_first):
    model, tokenizer = perturbed_tiny(pos_enc, norm_first, layers=1)
    e = explain(model, tokenizer, TEXT, search=SHORT_GREEDY)
    names = [s.name for s in e.steps]
    assert len(names) == len(set(names))
    expected = ["encoder.ids", "encoder.embed.X", "encoder.embed.scaled", "encoder.input"]
    expected += pe_names("encoder", pos_enc) + layer_names("encoder.0", "encoder.0", False)
    expected += ["encoder.output", "decoder.output.W_out"]
    for t in range(len(e.choices)):
        act = f"decoder.step{t}"
        expected += [f"{act}.{n}" for n in ("ids", "embed.X", "embed.scaled", "input")]
        expected += pe_names(act, pos_enc) + layer_names(f"{act}.0", "decoder.0", True)
        expected += [f"{act}.{n}" for n in ("logits", "probs", "topk", "chosen")]
    if norm_first:
        expected += ["encoder.final_norm.output", "encoder.final_norm.gamma"]
        expected += [
            "decoder.final_norm.gamma",
            f"decoder.step{len(e.choices) - 1}.final_norm.output",
        ]
    if pos_enc == "rope":
        expected += ["encoder.0.self_attn.head0.Q_rot", "encoder.0.self_attn.head1.K_rot"]
    assert sorted(set(expected) - set(names)) == []
    assert e.target_pieces[-1] == "</s>"


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_sublayer_order_follows_the_norm_placement(norm_first):
    model, tokenizer = perturbed_tiny(norm_first=norm_first, layers=1)
    order = {
        s.name: k for k, s in enumerate(explain(model, tokenizer, TEXT, search=SHORT_GREEDY).steps)
    }
    p = "encoder.0"
    if norm_first:  # x + Sublayer(LayerNorm(x))
        chain = ["norm1.output", "self_attn.output", "residual1", "norm2.output", "ffn.hidden",
                 "residual2"]  # fmt: skip
    else:  # LayerNorm(x + Sublayer(x))
        chain = ["self_attn.output", "residual1", "norm1.output", "ffn.hidden", "residual2",
                 "norm2.output"]  # fmt: skip
    positions = [order[f"{p}.{n}"] for n in chain]
    assert positions == sorted(positions)


def test_shapes_and_formulas_hold_between_steps():
    model, tokenizer = perturbed_tiny("sinusoidal", layers=1)
    e = explain(model, tokenizer, TEXT, search=SHORT_GREEDY)
    s = {step.name: step.tensor for step in e.steps}
    S = len(e.source_pieces)
    assert e.source_pieces == ["我", "喜", "欢", "小", "狗", "</s>"]
    assert_close(s["encoder.embed.scaled"], s["encoder.embed.X"] * math.sqrt(D))
    assert_close(s["encoder.input"], s["encoder.embed.scaled"] + s["encoder.pe.PE"])
    pos = torch.arange(S)[:, None]
    assert_close(s["encoder.pe.PE"][:, 0], torch.sin(pos[:, 0].float()))  # PE(pos, 0) = sin(pos)
    a = "encoder.0.self_attn.head1"
    assert s[f"{a}.W_Q"].shape == (D, D_K) and s[f"{a}.Q"].shape == (S, D_K)
    assert_close(s[f"{a}.Q"], s["encoder.0.self_attn.input"] @ s[f"{a}.W_Q"] + s[f"{a}.b_Q"])
    assert_close(s[f"{a}.scores"], s[f"{a}.Q"] @ s[f"{a}.K"].T / math.sqrt(D_K))
    assert_close(s[f"{a}.probs"], torch.softmax(s[f"{a}.scores"] + s[f"{a}.mask"], -1))
    assert_close(s[f"{a}.context"], s[f"{a}.probs"] @ s[f"{a}.V"])
    assert_close(s["encoder.0.self_attn.concat"][:, D_K:], s[f"{a}.context"])
    assert s["encoder.0.ffn.hidden"].shape == (S, D_FF) and s["encoder.0.ffn.hidden"].min() >= 0
    last = len(e.choices) - 1
    mask = s[f"decoder.step{last}.0.self_attn.head0.mask"]  # causal: -inf strictly above
    future = torch.ones_like(mask, dtype=torch.bool).triu(1)
    assert torch.isneginf(mask[future]).all() and torch.isfinite(mask[~future]).all()
    cross = s[f"decoder.step{last}.0.cross_attn.head0.probs"]
    assert cross.shape == (last + 1, S)
    assert_close(cross.sum(-1), torch.ones(last + 1))


@pytest.mark.parametrize(
    "search", [GreedySearch(), BeamSearch(beam_size=3)], ids=["greedy", "beam"]
)
def test_chosen_tokens_are_the_searchs_and_topk_is_sorted(search):
    model, tokenizer = perturbed_tiny("rope", layers=1)
    src_ids = torch.tensor([tokenizer.encode_src([TEXT])[0]])
    result = search(model, src_ids)[0]
    tokens = (result[0] if isinstance(result, list) else result).tokens
    e = explain(model, tokenizer, TEXT, search=search, top_k=3)
    assert [c.chosen[1] for c in e.choices] == tokens + [EOS_ID]
    for c in e.choices:
        probs = [p for _, _, p in c.top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        if c.rank == 1:
            assert c.chosen[1] == c.top[0][1]
        assert c.chosen[2] <= probs[0]
