"""Named steps of one recorded pass, in the paper's order and with its names.

Each builder reads a `Recording` of the real modules (inputs and outputs from forward hooks,
attention intermediates from the explicit attention path) and the modules' own parameters; it
computes nothing the model did not compute, only slices (one head, one sentence) and transposes
weights into the paper's orientation (x W, W of shape (d_in, d_out); torch stores W^T).

Names: activations under `act` (``encoder.0.self_attn.head1.Q``), parameters under `par`
(``encoder.0.self_attn.head1.W_Q``); in the decoder the activations of step t live under
``decoder.step{t}`` while the parameters are shown once, under ``decoder``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from transformer_mt.explain.capture import Recording
from transformer_mt.model import MultiHeadAttention
from transformer_mt.model.feed_forward import PositionwiseFeedForward

ATTENTION_KINDS = ("encoder self", "decoder self", "cross")


@dataclass
class Step:
    """One named matrix (or vector) with what it is and what its rows and columns are."""

    name: str
    tensor: Tensor
    """(rows, cols) or (n,), batch dimension removed, on the CPU."""
    title: str
    rows: list[str] | None = None
    """Labels of dim 0 (tokens), or None for plain indices."""
    cols: list[str] | None = None
    """Labels of the last dim of a matrix, or None for plain indices."""


@dataclass
class Heatmap:
    """Where one head's attention probabilities are: kind (ATTENTION_KINDS), layer, head."""

    kind: str
    layer: int
    head: int
    step: str


@dataclass
class StepWriter:
    """Appends steps of one pass; `emit_params` is False once parameters have been shown."""

    rec: Recording
    rows: list[str]
    emit_params: bool = True
    steps: list[Step] = field(default_factory=list)
    heatmaps: list[Heatmap] = field(default_factory=list)

    def act(self, name: str, tensor: Tensor, title: str, rows=None, cols=None) -> None:
        """An activation of this pass."""
        self.steps.append(Step(name, tensor.detach().cpu(), title, rows, cols))

    def par(self, name: str, tensor: Tensor, title: str, rows=None, cols=None) -> None:
        """A parameter, shown the first time only."""
        if self.emit_params:
            self.act(name, tensor, title, rows, cols)


def embedding_steps(w: StepWriter, act: str, stack: nn.Module, ids: Tensor, pos_enc: str) -> None:
    """Tokens, embedding rows X, X·√d_model, the positional signal and X·√d_model + PE.

    ids (1, T). `stack` is the model's Encoder or Decoder.
    """
    emb = stack.embedding
    w.act(f"{act}.ids", ids[0], "token ids (tokenizer pieces)", rows=w.rows)
    w.act(f"{act}.embed.X", emb.weight[ids[0]], "X: embedding rows of the tokens", w.rows)
    scaled = w.rec.call(emb).output[0]
    w.act(f"{act}.embed.scaled", scaled, f"X·√d_model (√d_model = {emb.scale:.4g})", w.rows)
    positional, length = stack.positional, ids.size(1)
    if pos_enc in ("sinusoidal", "learned"):
        pe = positional(torch.zeros_like(scaled)[None])[0]  # the module's own table rows
        w.act(f"{act}.pe.PE", pe, f"PE ({pos_enc} positional encoding)", w.rows)
    rotary = positional.rotary(length)
    if rotary is not None:
        w.act(f"{act}.pe.rope.cos", rotary.cos, "RoPE cos(pos·θ_i), rotates Q and K", w.rows)
        w.act(f"{act}.pe.rope.sin", rotary.sin, "RoPE sin(pos·θ_i), rotates Q and K", w.rows)
    bias = positional.attention_bias(length, length)
    if bias is not None:
        for head in range(bias.size(0)):
            title = f"{pos_enc} attention bias of head {head}, added to the scores"
            w.act(f"{act}.pe.bias.head{head}", bias[head], title, w.rows, w.rows)
    stream = w.rec.call(positional).output[0]
    title = "X·√d_model + PE" if pos_enc in ("sinusoidal", "learned") else "X·√d_model (no PE)"
    w.act(f"{act}.input", stream, title, w.rows)


def _head_mask(mask: Tensor | None, scores: Tensor) -> Tensor:
    """The additive mask broadcast to scores (B, h, T, S); zeros when there is none."""
    return torch.zeros_like(scores) if mask is None else mask.expand_as(scores)


def attention_steps(
    w: StepWriter,
    act: str,
    par: str,
    mha: MultiHeadAttention,
    *,
    keys: list[str],
    kind: str,
    layer: int,
) -> None:
    """Per head W_Q, W_K, W_V, Q, K, V, scores, mask, softmax, head output; concat and W_O."""
    call, trace = w.rec.call(mha), w.rec.trace(mha)
    source = call.args[1] if len(call.args) > 1 and call.args[1] is not None else call.input
    w.act(f"{act}.input", call.input[0], "x: the queries' input", w.rows)
    if kind == "cross":
        w.act(f"{act}.memory", source[0], "encoder output (memory): keys and values", keys)
    projections = {n: w.rec.call(getattr(mha, f"w_{n.lower()}")).output[0] for n in "QKV"}
    rotated = call.kwargs.get("rotary") is not None
    mask = _head_mask(trace.mask, trace.scores)[0]  # (h, T, S)
    for head in range(mha.num_heads):
        cols = slice(head * mha.d_k, (head + 1) * mha.d_k)
        h_act, h_par = f"{act}.head{head}", f"{par}.head{head}"
        for n in "QKV":
            linear = getattr(mha, f"w_{n.lower()}")
            w.par(f"{h_par}.W_{n}", linear.weight[cols].T, f"W_{n}^{head} (d_model × d_k)")
            w.par(f"{h_par}.b_{n}", linear.bias[cols], f"b_{n}^{head}")
            labels = w.rows if n == "Q" else keys
            w.act(f"{h_act}.{n}", projections[n][:, cols], f"{n} = x W_{n}^{head} + b", labels)
        if rotated:
            w.act(f"{h_act}.Q_rot", trace.q[0, head], "RoPE(Q): Q rotated by position", w.rows)
            w.act(f"{h_act}.K_rot", trace.k[0, head], "RoPE(K): K rotated by position", keys)
        q, k = ("Q_rot", "K_rot") if rotated else ("Q", "K")
        scores = trace.scores[0, head]
        w.act(f"{h_act}.scores", scores, f"{q} {k}ᵀ / √d_k", w.rows, keys)
        w.act(f"{h_act}.mask", mask[head], "mask (added: bias, -inf = hidden)", w.rows, keys)
        w.act(f"{h_act}.probs", trace.probs[0, head], "softmax(scores + mask)", w.rows, keys)
        w.heatmaps.append(Heatmap(kind, layer, head, f"{h_act}.probs"))
        w.act(f"{h_act}.context", trace.context[0, head], f"head_{head} = softmax(…) V", w.rows)
    w.act(f"{act}.concat", trace.concat[0], "Concat(head_1, …, head_h)", w.rows)
    w.par(f"{par}.W_O", mha.w_o.weight.T, "W_O (h·d_k × d_model)")
    w.par(f"{par}.b_O", mha.w_o.bias, "b_O")
    w.act(f"{act}.output", trace.output[0], "MultiHead = Concat(…) W_O + b_O", w.rows)


def ffn_steps(w: StepWriter, act: str, par: str, ffn: PositionwiseFeedForward) -> None:
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (section 3.3), with its hidden layer."""
    name = type(ffn.activation).__name__
    w.act(f"{act}.input", w.rec.call(ffn).input[0], "x: the FFN's input", w.rows)
    w.par(f"{par}.W_1", ffn.w_1.weight.T, "W_1 (d_model × d_ff)")
    w.par(f"{par}.b_1", ffn.w_1.bias, "b_1")
    hidden = w.rec.call(ffn.activation).output[0]
    w.act(f"{act}.hidden", hidden, f"hidden = {name}(x W_1 + b_1)", w.rows)
    w.par(f"{par}.W_2", ffn.w_2.weight.T, "W_2 (d_ff × d_model)")
    w.par(f"{par}.b_2", ffn.w_2.bias, "b_2")
    w.act(f"{act}.output", w.rec.call(ffn).output[0], "FFN(x) = hidden W_2 + b_2", w.rows)


def norm_steps(w: StepWriter, act: str, par: str, norm: nn.LayerNorm, title: str) -> None:
    """γ, β and the output of one LayerNorm."""
    w.par(f"{par}.gamma", norm.weight, "LayerNorm gain γ")
    w.par(f"{par}.beta", norm.bias, "LayerNorm bias β")
    w.act(f"{act}.output", w.rec.call(norm).output[0], title, w.rows)


def layer_steps(
    w: StepWriter,
    act: str,
    par: str,
    layer: nn.Module,
    *,
    index: int,
    next_norm: nn.Module,
    source: list[str] | None = None,
) -> None:
    """One encoder layer (`source` None) or decoder layer: each sublayer with its residual and
    LayerNorm, in the layer's own order (post-norm as the paper, or pre-norm).

    `next_norm` is the LayerNorm that reads this layer's output (the next layer's norm1 or the
    stack's final norm); pre-norm residual sums are read from its input.
    """
    decoder = source is not None
    sublayers: list[tuple[str, nn.Module, nn.Module]] = [
        ("self_attn", layer.self_attn, layer.norm1)
    ]
    if decoder:
        sublayers.append(("cross_attn", layer.cross_attn, layer.norm2))
    sublayers.append(("ffn", layer.ffn, layer.norm3 if decoder else layer.norm2))
    for k, (name, module, norm) in enumerate(sublayers):
        n, f = f"norm{k + 1}", "FFN" if name == "ffn" else "MultiHead"
        if layer.norm_first:
            norm_steps(w, f"{act}.{n}", f"{par}.{n}", norm, f"LayerNorm(x), input of {name}")
        _sublayer_steps(w, f"{act}.{name}", f"{par}.{name}", module, name, index, source)
        if layer.norm_first:
            after = sublayers[k + 1][2] if k + 1 < len(sublayers) else next_norm
            sum_title = f"x + {f}(LayerNorm(x)) (pre-norm residual)"
            w.act(f"{act}.residual{k + 1}", w.rec.call(after).input[0], sum_title, w.rows)
        else:
            sum_title = f"x + {f}(x) (residual)"
            w.act(f"{act}.residual{k + 1}", w.rec.call(norm).input[0], sum_title, w.rows)
            norm_steps(w, f"{act}.{n}", f"{par}.{n}", norm, f"LayerNorm(x + {f}(x))")


def _sublayer_steps(
    w: StepWriter,
    act: str,
    par: str,
    module: nn.Module,
    name: str,
    index: int,
    source: list[str] | None,
) -> None:
    if name == "ffn":
        ffn_steps(w, act, par, module)
    elif name == "cross_attn":
        attention_steps(w, act, par, module, keys=source, kind="cross", layer=index)
    else:
        kind = "encoder self" if source is None else "decoder self"
        attention_steps(w, act, par, module, keys=w.rows, kind=kind, layer=index)


def stack_steps(
    w: StepWriter, act: str, par: str, stack: nn.Module, source: list[str] | None = None
) -> None:
    """Every layer of an Encoder (`source` None) or Decoder, then the pre-norm final LayerNorm."""
    layers = stack.layers
    for i, layer in enumerate(layers):
        next_norm = layers[i + 1].norm1 if i + 1 < len(layers) else stack.final_norm
        layer_steps(
            w, f"{act}.{i}", f"{par}.{i}", layer, index=i, next_norm=next_norm, source=source
        )
    if isinstance(stack.final_norm, nn.LayerNorm):
        title = "final LayerNorm of the stack (pre-norm)"
        norm_steps(w, f"{act}.final_norm", f"{par}.final_norm", stack.final_norm, title)
