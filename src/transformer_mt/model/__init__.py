"""The encoder-decoder Transformer, one small module per part (plain torch.nn)."""

from transformer_mt.model.attention import AttentionTrace, MultiHeadAttention, record_attention
from transformer_mt.model.config import PRESETS, TransformerConfig
from transformer_mt.model.embeddings import OutputProjection, TokenEmbedding
from transformer_mt.model.state import EncoderOutput, IncrementalState, KVCache
from transformer_mt.model.transformer import Decoder, Encoder, Transformer

__all__ = [
    "PRESETS",
    "AttentionTrace",
    "Decoder",
    "Encoder",
    "EncoderOutput",
    "IncrementalState",
    "KVCache",
    "MultiHeadAttention",
    "OutputProjection",
    "TokenEmbedding",
    "Transformer",
    "TransformerConfig",
    "record_attention",
]
