"""The encoder-decoder Transformer (Vaswani et al., 2017) assembled from its parts.

`Transformer.forward` is the teacher-forced training pass. Generation uses `encode`, then
`init_incremental_state` and one `decode_step` per token: each decoder layer appends the new
token's self-attention K/V to its cache, cross-attention K/V are computed once from the memory,
and beams are reordered with `reorder_incremental_state` (fairseq's contract).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from transformer_mt.model.config import TransformerConfig
from transformer_mt.model.dropout import Dropout
from transformer_mt.model.embeddings import OutputProjection, TokenEmbedding
from transformer_mt.model.layers import DecoderLayer, EncoderLayer
from transformer_mt.model.positional import build_positional_encoding
from transformer_mt.model.state import (
    EncoderOutput,
    IncrementalState,
    KVStore,
    LayerKV,
    attend_mask,
    sentence_runs,
)


def compute_dtype(reference: Tensor) -> torch.dtype:
    """The dtype matmuls run in: autocast's (bf16 under `trainer=gpu`) when it is on for this
    device, else the reference tensor's. Caches and additive biases are kept in it, so no
    step casts them again (and a bf16 cache takes half the memory of an fp32 one)."""
    device = reference.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return reference.dtype


def _final_norm(config: TransformerConfig) -> nn.Module:
    """Pre-norm leaves the residual stream un-normalised, so each stack ends with a LayerNorm."""
    return nn.LayerNorm(config.d_model) if config.norm_first else nn.Identity()


def _with_causal(bias: Tensor) -> Tensor:
    """(h, T, T) positional bias -> (1, h, T, T) with -inf above the diagonal."""
    length = bias.size(-1)
    future = torch.ones(length, length, dtype=torch.bool, device=bias.device).triu(1)
    return bias.masked_fill(future, float("-inf"))[None]


class Encoder(nn.Module):
    """Embedding + positions, N encoder layers (+ final LayerNorm for pre-norm)."""

    def __init__(self, config: TransformerConfig, embedding: TokenEmbedding) -> None:
        super().__init__()
        self.pad_id = config.pad_id
        self.embedding = embedding
        self.positional = build_positional_encoding(config, causal=False)
        self.dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.final_norm = _final_norm(config)

    def forward(self, src_ids: Tensor) -> EncoderOutput:
        """src_ids (B, S) -> memory (B, S, D) and the padding mask (B, S)."""
        padding = src_ids.eq(self.pad_id)  # (B, S)
        length = src_ids.size(1)
        x = self.dropout(self.positional(self.embedding(src_ids)))
        mask = attend_mask(padding)  # (B, 1, 1, S) bool
        bias = self.positional.attention_bias(length, length)
        if bias is not None:  # fold padding into the additive bias: (B, h, S, S)
            mask = torch.where(mask, bias[None], float("-inf")).to(compute_dtype(x))
        rotary = self.positional.rotary(length)
        for layer in self.layers:
            x = layer(x, mask, rotary)
        return EncoderOutput(self.final_norm(x), padding)


class Decoder(nn.Module):
    """Embedding + positions, N decoder layers (+ final LayerNorm), output projection."""

    def __init__(
        self, config: TransformerConfig, embedding: TokenEmbedding, output: OutputProjection
    ) -> None:
        super().__init__()
        self.num_heads, self.d_k = config.num_heads, config.d_k
        self.embedding = embedding
        self.positional = build_positional_encoding(config, causal=True)
        self.dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_decoder_layers))
        self.final_norm = _final_norm(config)
        self.output = output

    def forward(self, tgt_in_ids: Tensor, enc: EncoderOutput) -> Tensor:
        """Full causal pass: tgt_in_ids (B, T) -> logits (B, T, V)."""
        return self.output(self.features(tgt_in_ids, enc))

    def features(self, tgt_in_ids: Tensor, enc: EncoderOutput) -> Tensor:
        """Full causal pass up to the output layer: tgt_in_ids (B, T) -> (B, T, D)."""
        length = tgt_in_ids.size(1)
        x = self.dropout(self.positional(self.embedding(tgt_in_ids)))
        bias = self.positional.attention_bias(length, length)
        self_mask = None if bias is None else _with_causal(bias).to(compute_dtype(x))  # (1,h,T,T)
        cross_mask = attend_mask(enc.src_key_padding_mask)  # (B, 1, 1, S)
        rotary = self.positional.rotary(length)
        for layer in self.layers:
            x = layer(
                x,
                enc.memory,
                self_mask=self_mask,
                is_causal=bias is None,
                cross_mask=cross_mask,
                rotary=rotary,
            )
        return self.final_norm(x)

    def init_state(self, enc: EncoderOutput, capacity: int = 32) -> IncrementalState:
        """Empty self-attention caches; cross-attention K/V computed once from the memory, once
        per run of adjacent rows that hold the same sentence (`enc.source_index`)."""
        rows = enc.memory.size(0)
        _, group = sentence_runs(enc.source_index)
        if group > 1:  # one row per sentence: (Bs, S, D)
            enc = enc.index_select(torch.arange(0, rows, group, device=enc.memory.device))
        memory = enc.memory
        keys, values = zip(
            *(layer.cross_attn.precompute_kv(memory) for layer in self.layers), strict=True
        )
        # K stored transposed, (L, Bs, h, d_k, S) in memory: the step's q K^T then reads it
        # contiguously (~25% faster than through a transposed view)
        cross_k = torch.stack(keys).transpose(-2, -1).contiguous().transpose(-2, -1)
        cross_v = torch.stack(values)  # (L, Bs, h, S, d_k)
        # the cache holds what the projections produce: bf16 under autocast, not the memory's
        # fp32 (LayerNorm outputs stay fp32 under autocast)
        like = memory.new_empty(0, dtype=compute_dtype(memory))
        store = KVStore(len(self.layers), rows, self.num_heads, self.d_k, like, capacity)
        caches = [
            LayerKV(store, index, layer.self_attn.stacked_qkv())
            for index, layer in enumerate(self.layers)
        ]
        mask = attend_mask(enc.src_key_padding_mask)
        return IncrementalState(
            enc, store, cross_k, cross_v, mask, group=group, layer_caches=caches
        )

    def step(self, prev_tokens: Tensor, state: IncrementalState) -> Tensor:
        """One token per sentence: prev_tokens (B,) -> logits (B, V); advances the caches."""
        position = state.step
        x = self.dropout(self.positional(self.embedding(prev_tokens[:, None]), position))
        bias = self.positional.attention_bias(1, position + 1, position)  # past keys only
        self_mask = None if bias is None else bias[None].to(compute_dtype(x))  # (1, h, 1, t+1)
        rotary = self.positional.rotary(1, position)
        for index, layer in enumerate(self.layers):
            x = layer(
                x,
                None,
                self_mask=self_mask,
                is_causal=False,
                cross_mask=state.cross_mask,
                rotary=rotary,
                self_cache=state.layer_caches[index],
                cross_kv=(state.cross_k[index], state.cross_v[index]),
            )
        state.self_attn.advance(1)
        state.step = position + 1
        return self.output(self.final_norm(x[:, 0]))


class Transformer(nn.Module):
    """Encoder-decoder Transformer: src_ids (B, S), tgt_in_ids (B, T) -> logits (B, T, V)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        src_embedding = TokenEmbedding(config.src_vocab_size, config.d_model, config.pad_id)
        tgt_embedding = (
            src_embedding
            if config.share_embeddings
            else TokenEmbedding(config.tgt_vocab_size, config.d_model, config.pad_id)
        )
        output = OutputProjection(
            config.d_model,
            config.tgt_vocab_size,
            tgt_embedding if config.tie_output else None,
            bias=config.output_bias,
        )
        self.encoder = Encoder(config, src_embedding)
        self.decoder = Decoder(config, tgt_embedding, output)
        self._init_linear_layers()

    def _init_linear_layers(self) -> None:
        """Xavier-uniform weights and zero biases, as the paper's reference code (tensor2tensor);
        embeddings and position tables keep their own N(0, d_model^-0.5) init."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, src_ids: Tensor, tgt_in_ids: Tensor) -> Tensor:
        """Teacher-forced pass: src_ids (B, S), tgt_in_ids (B, T) -> logits (B, T, V_tgt)."""
        return self.decoder(tgt_in_ids, self.encoder(src_ids))

    def features(self, src_ids: Tensor, tgt_in_ids: Tensor) -> Tensor:
        """Teacher-forced pass up to the output layer -> (B, T, D): training projects these to
        the vocabulary inside the loss, a slice of rows at a time (`projected_smoothed_loss`)."""
        return self.decoder.features(tgt_in_ids, self.encoder(src_ids))

    @property
    def output_weight(self) -> Tensor:
        """The pre-softmax matrix (V_tgt, D): logits = features @ output_weight.T + bias."""
        return self.decoder.output.weight

    @property
    def output_bias(self) -> Tensor | None:
        """The logits' bias (V_tgt,), or None (the paper's model has none)."""
        return self.decoder.output.bias

    def encode(self, src_ids: Tensor) -> EncoderOutput:
        """src_ids (B, S) -> EncoderOutput(memory (B, S, D), src_key_padding_mask (B, S))."""
        return self.encoder(src_ids)

    def decode(self, tgt_in_ids: Tensor, enc: EncoderOutput) -> Tensor:
        """Full causal pass over tgt_in_ids (B, T) -> logits (B, T, V)."""
        return self.decoder(tgt_in_ids, enc)

    @torch.no_grad()
    def init_incremental_state(self, enc: EncoderOutput, capacity: int = 32) -> IncrementalState:
        """Caches for step-by-step decoding of the sentences in `enc` (room for `capacity`
        steps before the self-attention cache grows; pass the maximum output length)."""
        return self.decoder.init_state(enc, capacity)

    @torch.no_grad()
    def decode_step(self, prev_tokens: Tensor, state: IncrementalState) -> Tensor:
        """prev_tokens (B,) (bos at step 0) -> next-token logits (B, V); appends to the cache.

        For generation: runs without autograd (train with the full `forward`).
        """
        return self.decoder.step(prev_tokens, state)

    @torch.no_grad()
    def reorder_incremental_state(self, state: IncrementalState, new_order: Tensor) -> None:
        """Keep rows `new_order` (B',) of every cached tensor (B' may be < B), in place."""
        state.reorder(new_order)
