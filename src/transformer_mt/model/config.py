"""Hyperparameters of the Transformer, validated once so the modules can trust them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from transformer_mt.constants import PAD_ID

POS_ENC_CHOICES = ("sinusoidal", "learned", "rope", "alibi", "relative", "none")
ACTIVATION_CHOICES = ("relu", "gelu", "swish")

# Named sizes. base/big are Table 3 of Vaswani et al. (2017); small/tiny fit a CPU
# (tiny is the Multi30k size reported to reach ~41 BLEU En->De).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        d_model=128, d_ff=256, num_heads=4, num_encoder_layers=4, num_decoder_layers=4, dropout=0.3
    ),
    "small": dict(
        d_model=256, d_ff=1024, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, dropout=0.1
    ),
    "base": dict(
        d_model=512, d_ff=2048, num_heads=8, num_encoder_layers=6, num_decoder_layers=6, dropout=0.1
    ),
    "big": dict(
        d_model=1024,
        d_ff=4096,
        num_heads=16,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.3,
    ),
}


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that fixes the shape and behaviour of a `Transformer`."""

    src_vocab_size: int
    """Source vocabulary size (rows of the source embedding)."""
    tgt_vocab_size: int
    """Target vocabulary size (rows of the target embedding and columns of the logits)."""
    d_model: int = 512
    """Width of every residual stream, embedding and attention output."""
    d_ff: int = 2048
    """Inner width of the position-wise feed-forward network."""
    num_heads: int = 8
    """Attention heads h; each works in d_k = d_model / h dimensions."""
    num_encoder_layers: int = 6
    """Encoder layers N."""
    num_decoder_layers: int = 6
    """Decoder layers N."""
    dropout: float = 0.1
    """P_drop on embeddings+positions, on every sublayer output and inside the FFN."""
    attention_dropout: float = 0.0
    """Dropout on the attention probabilities (0 in the paper)."""
    activation: str = "relu"
    """FFN non-linearity: relu (paper), gelu, or swish (x * sigmoid(x), Marian / OPUS-MT's)."""
    norm_first: bool = False
    """False: post-norm LayerNorm(x + Sublayer(x)) as the paper; True: pre-norm
    x + Sublayer(LayerNorm(x)) with a final LayerNorm after each stack."""
    pos_enc: str = "sinusoidal"
    """Position signal: sinusoidal | learned | rope | alibi | relative | none."""
    max_positions: int = 1024
    """Rows of the position table: the limit of learned positions; for sinusoidal and rope the
    precomputed rows (positions past them are computed on the fly)."""
    relative_num_buckets: int = 32
    """T5 relative attention: number of distance buckets."""
    relative_max_distance: int = 128
    """T5 relative attention: distances beyond this share the last bucket."""
    share_embeddings: bool = False
    """One embedding matrix for source and target (needs a joint vocabulary)."""
    tie_output: bool = True
    """Pre-softmax projection uses the target embedding matrix (paper section 3.4)."""
    output_bias: bool = False
    """A bias on the logits (none in the paper; Marian's final_logits_bias, for imports)."""
    pad_id: int = PAD_ID
    """Padding token id: zero embedding row, masked as an attention key."""

    def __post_init__(self) -> None:
        self._check_positive()
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.pos_enc not in POS_ENC_CHOICES:
            raise ValueError(
                f"pos_enc={self.pos_enc!r}; valid choices: {', '.join(POS_ENC_CHOICES)}"
            )
        if self.activation not in ACTIVATION_CHOICES:
            raise ValueError(
                f"activation={self.activation!r}; valid choices: {', '.join(ACTIVATION_CHOICES)}"
            )
        if self.pos_enc == "rope" and self.d_k % 2:
            raise ValueError(
                f"pos_enc='rope' needs an even d_k = d_model / num_heads, got {self.d_k}"
            )
        if self.pos_enc == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"pos_enc='sinusoidal' needs an even d_model, got {self.d_model}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        self._check_relative()
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings=True needs one joint vocabulary: src_vocab_size "
                f"({self.src_vocab_size}) != tgt_vocab_size ({self.tgt_vocab_size})"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_id ({self.pad_id}) must be a valid id of both vocabularies")

    def _check_positive(self) -> None:
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "d_model",
            "d_ff",
            "num_heads",
            "num_encoder_layers",
            "num_decoder_layers",
            "max_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def _check_relative(self) -> None:
        if self.pos_enc != "relative":
            return
        if self.relative_num_buckets < 4 or self.relative_num_buckets % 2:
            raise ValueError(
                f"relative_num_buckets must be even and >= 4, got {self.relative_num_buckets}"
            )
        if self.relative_max_distance <= self.relative_num_buckets // 2:
            raise ValueError(
                f"relative_max_distance ({self.relative_max_distance}) must exceed "
                f"relative_num_buckets // 2 ({self.relative_num_buckets // 2})"
            )

    @property
    def position_limit(self) -> int | None:
        """The most positions a stack can represent (tokens, EOS included): the learned table's
        rows; None for kinds that compute any position."""
        return self.max_positions if self.pos_enc == "learned" else None

    @property
    def d_k(self) -> int:
        """Per-head width d_k = d_v = d_model / h."""
        return self.d_model // self.num_heads

    @classmethod
    def preset(
        cls, name: str, *, src_vocab_size: int, tgt_vocab_size: int, **overrides: Any
    ) -> TransformerConfig:
        """A named size (`tiny`, `small`, `base`, `big`) with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"preset={name!r}; valid choices: {', '.join(PRESETS)}")
        fields = {**PRESETS[name], **overrides}
        return cls(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, **fields)

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
