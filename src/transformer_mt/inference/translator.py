"""Lines in, translations out: tokenize, batch by tokens, search through a backend, restore order.

One path for `translate.py`, `evaluate.py` and the benchmarks, whatever the backend (this
package's PyTorch model or an exported CTranslate2 model):

- empty and whitespace-only lines are not sent to the model: their translation is empty, so
  the output stays aligned with the input;
- a line longer than the model can encode is cut to what it can take, after a warning that
  names the line (never a failure of the whole stream);
- within each chunk, lines are sorted by length into batches whose padded size stays within
  `max_tokens` source tokens, then put back in input order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from transformer_mt.constants import EOS_ID
from transformer_mt.inference.backend import Backend

log = logging.getLogger(__name__)


class TextTokenizer(Protocol):
    """The part of `transformer_mt.data.Tokenizer` that translation needs."""

    def encode_src(self, lines: list[str]) -> list[list[int]]: ...

    def decode_tgt(self, ids: list[list[int]]) -> list[str]: ...


@dataclass(frozen=True)
class Candidate:
    """One hypothesis as text, with the search's length-normalized log-probability."""

    text: str
    score: float


@dataclass(frozen=True)
class Translation:
    """The n-best translations of input line `line` (0-based), best first."""

    line: int
    source: str
    candidates: list[Candidate]

    @property
    def text(self) -> str:
        """The best translation ("" for an empty input line)."""
        return self.candidates[0].text if self.candidates else ""


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size B * max_len stays
    within `max_tokens` (a longer sentence gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class Translator:
    """Translates lines with `backend`, `max_tokens` source tokens per batch.

    `source_name` names the input in warnings (a file, or "<stdin>").
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        backend: Backend,
        *,
        max_tokens: int = 4096,
        source_name: str = "input",
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive number of tokens, got {max_tokens}")
        self.tokenizer, self.backend = tokenizer, backend
        self.max_tokens, self.source_name = max_tokens, source_name

    def translate(self, lines: Sequence[str], first_line: int = 0) -> list[Translation]:
        """Translations of `lines` in input order; `first_line` numbers the first of them."""
        todo = [i for i, line in enumerate(lines) if line.strip()]
        ids = self._encode([lines[i] for i in todo], [first_line + i for i in todo])
        candidates: dict[int, list[Candidate]] = {}
        for batch in token_budget_batches([len(s) for s in ids], self.max_tokens):
            rows = [todo[k] for k in batch]
            nbest = self.backend.search([ids[k] for k in batch], [first_line + i for i in rows])
            texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in nbest for h in hyps]))
            for i, hyps in zip(rows, nbest, strict=True):
                candidates[i] = [Candidate(next(texts), h.score) for h in hyps]
        return [
            Translation(first_line + i, line, candidates.get(i, [Candidate("", 0.0)]))
            for i, line in enumerate(lines)
        ]

    def translate_stream(self, chunks: Iterable[Sequence[str]]) -> Iterator[Translation]:
        """Translate chunk after chunk (e.g. what has arrived on stdin), yielding each chunk's
        translations in order as soon as it is done; lines are numbered across chunks."""
        first = 0
        for chunk in chunks:
            yield from self.translate(chunk, first_line=first)
            first += len(chunk)

    def _encode(self, lines: list[str], numbers: list[int]) -> list[list[int]]:
        """Source ids (EOS last), cut to the backend's limit with a warning per long line."""
        ids = self.tokenizer.encode_src(lines) if lines else []
        limit = self.backend.max_source_len
        if limit is None:
            return ids
        for k, row in enumerate(ids):
            if len(row) > limit:
                log.warning(
                    "%s line %d: %d tokens, more than the model's %d positions; translating "
                    "its first %d tokens",
                    self.source_name, numbers[k] + 1, len(row), limit, limit - 1,
                )  # fmt: skip
                ids[k] = [*row[: limit - 1], EOS_ID]
        return ids
