"""The incremental-decoding protocol every search in this package is written against.

It is fairseq's contract: the model encodes the source once, keeps whatever it needs to extend
a prefix by one token (for the Transformer: cached self-attention keys/values per layer and the
cross-attention keys/values computed once from the memory), and reorders that cache by row index
when beams are reshuffled or finished sentences leave the batch. Searches never see inside the
encoder output or the state; a fake decoder with scripted probabilities implements the same
protocol in the tests.
"""

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class IncrementalDecoder(Protocol):
    """A model that can be decoded one token at a time.

    Rows of the state correspond to rows of `prev_tokens`; the search keeps that
    correspondence by calling `reorder_incremental_state` whenever rows move.
    """

    def encode(self, src_ids: Tensor) -> Any:
        """Encode a PAD-padded source batch `(B, S)` once."""
        ...

    def init_incremental_state(self, enc: Any) -> Any:
        """A fresh decoding state for the `B` sentences of `enc` (no tokens decoded yet)."""
        ...

    def decode_step(self, prev_tokens: Tensor, state: Any) -> Tensor:
        """Logits `(R, V)` of the next token given the previous one `(R,)`; appends to `state`.

        The first call receives BOS for every row.
        """
        ...

    def reorder_incremental_state(self, state: Any, new_order: Tensor) -> None:
        """Keep row `new_order[i]` of the state as row `i` (index_select on dim 0, in place).

        `new_order` `(R',)` long may repeat rows (beams expanded from one sentence) and may be
        shorter than the current batch (finished sentences leave).
        """
        ...
