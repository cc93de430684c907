"""Backends: something that turns batches of source ids into n-best hypotheses.

The translator (`transformer_mt.inference.translator`) tokenizes, batches and restores order;
a backend only searches. `TorchBackend` runs this package's own model and searches;
`transformer_mt.inference.ctranslate2.CTranslate2Backend` runs an exported CTranslate2 model
with the same decoding settings. Both return what the searches return: per sentence a list of
`Hypothesis` (token ids without BOS/EOS, a length-normalized score), best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from transformer_mt.constants import PAD_ID
from transformer_mt.decoding import Hypothesis, Search
from transformer_mt.model import Transformer


class Backend(Protocol):
    """Searches a batch of tokenized sources."""

    @property
    def max_source_len(self) -> int | None:
        """Most source tokens (EOS included) the model can encode; None = no limit."""
        ...

    @property
    def nbest(self) -> int:
        """Hypotheses returned per sentence (at most)."""
        ...

    def search(
        self, sources: Sequence[Sequence[int]], row_ids: Sequence[int]
    ) -> list[list[Hypothesis]]:
        """N-best lists, best first, one per source (ids ending with EOS). `row_ids` name the
        sentences (their line numbers), which seeded sampling draws from."""
        ...


def pad_batch(rows: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Tensor:
    """Right-pad id lists with PAD_ID into a (B, S) long tensor."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out.to(device)


class TorchBackend:
    """This package's Transformer and searches, in eval mode on `device`."""

    def __init__(
        self, model: Transformer, search: Search, device: torch.device | str = "cpu"
    ) -> None:
        self.model = model.to(device).eval()
        self.search_fn = search
        self.device = torch.device(device)

    @property
    def max_source_len(self) -> int | None:
        return self.model.config.position_limit

    @property
    def nbest(self) -> int:
        return self.search_fn.nbest

    @torch.inference_mode()
    def search(
        self, sources: Sequence[Sequence[int]], row_ids: Sequence[int]
    ) -> list[list[Hypothesis]]:
        if not sources:
            return []
        src_ids = pad_batch(sources, self.device)
        return self.search_fn(
            self.model, src_ids, row_ids=row_ids, max_len=self.model.config.position_limit
        )
