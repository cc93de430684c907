"""Follow one sentence through every matrix of a Transformer, from the model's own forward.

The search (greedy, beam or sampling, from `transformer_mt.decoding`) chooses the translation.
Then the encoder pass and, for every output position t, the decoder's causal pass over the prefix
``<s> y_1 .. y_{t-1}`` are run again under `recording`, which yields the matrices of that step
(the full causal pass shows the causal mask; its last row is exactly what the cached
`decode_step` computes for token t). The model is left as it was: eval for the trace, its
training flag restored, hooks and trace sinks removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from transformer_mt.constants import BOS_ID, EOS_ID
from transformer_mt.decoding import GreedySearch, Search
from transformer_mt.explain.capture import recording
from transformer_mt.explain.steps import Heatmap, Step, StepWriter, embedding_steps, stack_steps
from transformer_mt.model import Transformer, TransformerConfig


class ExplainTokenizer(Protocol):
    """What explain needs of a tokenizer (`transformer_mt.data.Tokenizer` or `ToyTokenizer`)."""

    tgt_vocab_size: int

    def encode_src(self, lines: list[str]) -> list[list[int]]: ...

    def src_pieces(self, line: str) -> list[str]: ...

    def tgt_pieces(self, ids: list[int]) -> list[str]: ...

    def decode_tgt(self, ids: list[list[int]]) -> list[str]: ...


@dataclass
class Choice:
    """One decoding step: the top-k candidates (piece, id, p) and the token the search chose."""

    step: int
    top: list[tuple[str, int, float]]
    chosen: tuple[str, int, float]
    rank: int
    """1 = the most probable token; larger when the search (beam, length limits) chose
    another."""


@dataclass
class Explanation:
    """Every step of one sentence's translation, in order, plus what was decoded."""

    text: str
    source_pieces: list[str]
    target_pieces: list[str]
    """The chosen tokens, ending with </s>."""
    translation: str
    config: TransformerConfig
    layer_norm_eps: float
    search: str
    steps: list[Step]
    heatmaps: list[Heatmap]
    choices: list[Choice]


@torch.no_grad()
def explain(
    model: Transformer,
    tokenizer: ExplainTokenizer,
    text: str,
    *,
    search: Search | None = None,
    top_k: int = 5,
) -> Explanation:
    """Translate `text` with `search` (default greedy) and record every matrix on the way."""
    search = search or GreedySearch()
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        src_ids = torch.tensor([tokenizer.encode_src([text])[0]], device=device)  # (1, S)
        best = search(model, src_ids, max_len=model.config.position_limit)[0][0]
        chosen = [*best.tokens, EOS_ID]
        source = tokenizer.src_pieces(text)
        with recording(model) as rec:
            enc = model.encode(src_ids)
        w = StepWriter(rec, source)
        embedding_steps(w, "encoder", model.encoder, src_ids, model.config.pos_enc)
        stack_steps(w, "encoder", "encoder", model.encoder)
        w.act("encoder.output", enc.memory[0], "encoder output (memory)", source)
        steps, heatmaps, choices = w.steps, w.heatmaps, []
        for t in range(len(chosen)):
            prefix = torch.tensor([[BOS_ID] + chosen[:t]], device=device)  # (1, t + 1)
            step_w, choice = _decoder_step(model, tokenizer, enc, prefix, source, chosen[t], top_k)
            steps += step_w.steps
            choices.append(choice)
        heatmaps += step_w.heatmaps  # the last step's maps hold every earlier row
    finally:
        model.train(was_training)
    return Explanation(
        text=text,
        source_pieces=source,
        target_pieces=tokenizer.tgt_pieces(chosen),
        translation=tokenizer.decode_tgt([chosen])[0],
        config=model.config,
        layer_norm_eps=model.encoder.layers[0].norm1.eps,
        search=search.name,
        steps=steps,
        heatmaps=heatmaps,
        choices=choices,
    )


def _decoder_step(
    model: Transformer,
    tokenizer: ExplainTokenizer,
    enc: Any,
    prefix: Tensor,
    source: list[str],
    chosen: int,
    top_k: int,
) -> tuple[StepWriter, Choice]:
    """The decoder's causal pass over `prefix` (1, t + 1) and the next-token distribution."""
    t = prefix.size(1) - 1
    act = f"decoder.step{t}"
    with recording(model) as rec:
        model.decode(prefix, enc)
    w = StepWriter(rec, tokenizer.tgt_pieces(prefix[0].tolist()), emit_params=t == 0)
    embedding_steps(w, act, model.decoder, prefix, model.config.pos_enc)
    stack_steps(w, act, "decoder", model.decoder, source=source)
    output = model.decoder.output
    vocab = tokenizer.tgt_pieces(list(range(tokenizer.tgt_vocab_size)))
    w.par("decoder.output.W_out", output.weight.T, "W_out (d_model × V), pre-softmax projection")
    logits = rec.call(output).output[0, -1]  # (V,) the last position predicts token t
    w.act(f"{act}.logits", logits, f"logits of token {t + 1} = h_last W_out", vocab)
    probs = torch.softmax(logits.float(), dim=-1)
    w.act(f"{act}.probs", probs, "softmax(logits): next-token probabilities", vocab)
    k = min(top_k, probs.numel())
    top = torch.topk(probs, k)
    top_pieces = [vocab[i] for i in top.indices.tolist()]
    w.act(f"{act}.topk", top.values, f"top-{k} candidates (probability)", top_pieces)
    rank = int((probs > probs[chosen]).sum()) + 1
    title = f"chosen token {vocab[chosen]!r} (id {chosen}, rank {rank})"
    w.act(f"{act}.chosen", probs[chosen : chosen + 1], title, [vocab[chosen]])
    choice = Choice(
        step=t,
        top=[
            (vocab[i], i, float(p))
            for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        ],
        chosen=(vocab[chosen], chosen, float(probs[chosen])),
        rank=rank,
    )
    return w, choice
