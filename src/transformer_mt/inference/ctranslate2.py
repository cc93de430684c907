"""`CTranslate2Backend`: the searches of `transformer_mt.decoding`, run by CTranslate2.

A folder written by `transformer_mt.formats.ctranslate2.export_ctranslate2` is searched with
the same settings objects as `TorchBackend` (`GreedySearch`, `BeamSearch`, `Sampling`), and the
results mean what ours mean. What CTranslate2 (4.8.5, measured) does differently, and how this
backend makes up for it:

- Length limit. Ours is per sentence: L = `floor(max_len_a * src_len + max_len_b)` tokens
  with the EOS, which is forced at the last one. CTranslate2's `max_decoding_length` is per
  call and counts the EOS when one is produced, but at the limit it just stops, without an
  EOS. So a sentence allowed L tokens needs L - 1 steps, and an output without an EOS gets
  ours. Greedy and sampling decode the batch with the largest limit and cut each output to its
  own L - 1 tokens (a prefix of a longer greedy or sampled output is what the shorter limit
  gives). Beam search, whose beams a limit changes, decodes the batch with the largest limit;
  with `exact_limits=True` it then searches again, per limit, the sentences whose own limit
  mattered (`_beam`): the same hypotheses as ours, at the price of one small call per limit
  (+55% time on Multi30k val with an undertrained model, whose runaway outputs are 4% of the
  sentences). With `exact_limits=False` (the default) those few sentences keep the first
  search's best hypotheses, cut to their own limit, as CTranslate2's own batch limit gives.
- `min_decoding_length` counts the tokens before the EOS, as our `min_len` does.
- Scores. CTranslate2's `score` is `sum(log p) / length ** length_penalty` over the tokens and
  the EOS, length counting the EOS: our formula, but its log-probabilities are renormalized
  over the tokens not suppressed at each step (PAD, BOS, the EOS before min_len), and untempered
  when sampling. Ours are the plain log_softmax (fairseq masks without renormalizing). With
  `exact_scores=True` every hypothesis is rescored by `Translator.score_batch`,
  a teacher-forced pass: `log_prob` and `positional_scores` are then ours exactly (to float
  error) and `score = normalized_score(log_prob)`. With `exact_scores=False` (the default,
  `backend.exact_scores` in the config), `log_prob =
  score * (len + 1) ** len_penalty` from CTranslate2's own score (off from ours by the
  suppressed mass, about 1e-3 per sentence on a small trained model), no positional scores,
  and only the outputs stopped at a limit are rescored (they lack the EOS term); on a CPU this
  saves 35-45% of the time.
- Seeded sampling. `ctranslate2.set_random_seed` only seeds a worker thread's generator the
  first time that thread samples; a used translator keeps drawing from its old stream
  (CTranslate2 issue #1757). So with `Sampling(seed=...)` every draw gets a fresh `Translator`,
  made right after seeding from (seed, row id, draw): a sentence's samples depend on nothing
  else, as ours do, for the price of a model load per sentence and draw. The streams are
  CTranslate2's, so the samples are not those `TorchBackend` draws.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.decoding import Hypothesis
from transformer_mt.decoding.constraints import max_output_lengths
from transformer_mt.decoding.hypothesis import finished_hypothesis, normalized_score
from transformer_mt.decoding.search import BeamSearch, GreedySearch, Sampling, draw_generator
from transformer_mt.formats.ctranslate2 import (
    position_rows,
    read_ctranslate2_dir,
    require_ctranslate2,
)
from transformer_mt.formats.info import ModelInfo
from transformer_mt.inference.backend import pad_batch


class _Found(NamedTuple):
    """One output: ids without BOS/EOS, cut to its limit, and its log-prob when CTranslate2's
    score gives it (None: rescore it)."""

    ids: list[int]
    log_prob: float | None


_Scored = tuple[list[str], float]
"""An output as CTranslate2 gives it: its pieces and its score."""


class CTranslate2Backend:
    """An exported CTranslate2 folder behind the `Backend` protocol.

    device, intra_threads (0: CTranslate2's default) and compute_type ("default": the exported
    quantization) go to `ctranslate2.Translator`; exact_scores and exact_limits: see the module
    docstring.
    """

    def __init__(
        self,
        model_dir: str | Path,
        search: GreedySearch | BeamSearch | Sampling,
        device: str = "cpu",
        intra_threads: int = 0,
        compute_type: str = "default",
        *,
        exact_scores: bool = False,
        exact_limits: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._info, self._tokenizer = read_ctranslate2_dir(self.model_dir)
        self.search_settings = search
        self.exact_scores, self.exact_limits = exact_scores, exact_limits
        self._options = {
            "device": device, "intra_threads": intra_threads, "compute_type": compute_type
        }  # fmt: skip
        self._ct2 = require_ctranslate2()
        self.translator = self._ct2.Translator(str(self.model_dir), **self._options)
        self._src_vocab = self._tokenizer.src_vocabulary()
        self._tgt_vocab = self._tokenizer.tgt_vocabulary()
        self._tgt_ids = {piece: i for i, piece in enumerate(self._tgt_vocab)}
        self._eos = self._tgt_vocab[EOS_ID]
        self._src_rows, self._tgt_rows = position_rows(self._info.config)

    @property
    def max_source_len(self) -> int | None:
        """Rows of the exported encoder position table (CTranslate2 raises past it); None when
        it has none (relative)."""
        return self._src_rows

    @property
    def nbest(self) -> int:
        return self.search_settings.nbest

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def search(
        self, sources: Sequence[Sequence[int]], row_ids: Sequence[int]
    ) -> list[list[Hypothesis]]:
        """N-best lists, best first, for sources (ids ending with EOS) named by `row_ids`."""
        if not sources:
            return []
        pieces = [[self._src_vocab[i] for i in source] for source in sources]
        limits = self._limits(sources)
        settings = self.search_settings
        if isinstance(settings, BeamSearch):
            found = self._beam(pieces, limits)
        elif isinstance(settings, Sampling) and settings.seed is not None:
            found = self._seeded(pieces, limits, row_ids)
        else:  # greedy, or unseeded sampling
            found = self._single_path(pieces, limits)
        return self._finish(pieces, found)

    @property
    def _len_penalty(self) -> float:
        """The exponent our scores use (greedy scores as len_penalty=1, as greedy_search)."""
        return getattr(self.search_settings, "len_penalty", 1.0)

    def _limits(self, sources: Sequence[Sequence[int]]) -> list[int]:
        """Each sentence's output limit, EOS included, by our own formula (`max_output_lengths`),
        capped by the decoder's position table."""
        settings = self.search_settings
        lengths = max_output_lengths(
            pad_batch(sources), settings.max_len_a, settings.max_len_b, self._tgt_rows
        )
        return lengths.tolist()

    def _decode_options(self, steps: int) -> dict[str, Any]:
        """translate_batch arguments every search shares, for `steps` decoding steps at most.

        CTranslate2 refuses a minimum above the maximum; ours lets the limit win (the EOS is
        forced there), which capping the minimum at `steps` gives.
        """
        return {
            "max_input_length": 0,  # the translator already cut sources to max_source_len
            "max_decoding_length": steps,
            "min_decoding_length": min(self.search_settings.min_len, steps),
            "suppress_sequences": [[self._tgt_vocab[PAD_ID]], [self._tgt_vocab[BOS_ID]]],
            "return_end_token": True,  # tells an output that ended from one that was stopped
            "return_scores": True,
            "length_penalty": self._len_penalty,  # CTranslate2's score is then ours
        }

    def _sampling_options(self) -> dict[str, Any]:
        """Our Sampling's filters in CTranslate2's terms; greedy is top-1 sampling there."""
        settings = self.search_settings
        if not isinstance(settings, Sampling):
            return {"sampling_topk": 1}
        # 0 samples the whole distribution there, as our top_k=0; it refuses k > V, which
        # keeps every token in ours
        top_k = settings.top_k if settings.top_k < len(self._tgt_vocab) else 0
        return {
            "sampling_topk": top_k,
            "sampling_topp": settings.top_p,
            "sampling_temperature": settings.temperature,
        }

    def _found(self, pieces: list[str], score: float, limit: int) -> _Found:
        """An output (pieces, CTranslate2's score) as ids cut to limit - 1 tokens, the EOS
        ours then. CTranslate2's log-prob stands only for an output that ended in time."""
        ids = [self._tgt_ids[piece] for piece in pieces]
        ended = bool(ids) and ids[-1] == EOS_ID
        if ended:
            ids.pop()
        if self.exact_scores or not ended or len(ids) >= limit:
            return _Found(ids[: limit - 1], None)
        return _Found(ids, score * (len(ids) + 1) ** self._len_penalty)

    def _single_path(self, pieces: list[list[str]], limits: list[int]) -> list[list[_Found]]:
        """Greedy / unseeded sampling: one call with the largest limit, outputs cut to each."""
        steps = max(limits) - 1  # the last position is our forced EOS
        if steps < 1:
            return [[_Found([], None)] for _ in pieces]
        results = self.translator.translate_batch(
            pieces, beam_size=1, num_hypotheses=self.nbest, **self._sampling_options(),
            **self._decode_options(steps),
        )  # fmt: skip
        return [
            [self._found(hyp, score, limit) for hyp, score in _pool(result)]
            for result, limit in zip(results, limits, strict=True)
        ]

    def _beam(self, pieces: list[list[str]], limits: list[int]) -> list[list[_Found]]:
        """One search with the batch's largest limit; then, per distinct limit, one more for
        the sentences whose own limit mattered in it.

        A limit changes a search only from the step it is reached, so a sentence whose
        hypotheses had all ended in time (two steps before its own limit, or at any step when
        the limit is its own) found exactly what a search with its limit finds.
        """
        found = [[_Found([], None)] for _ in pieces]  # a limit of 1 allows only the EOS
        todo = [row for row, limit in enumerate(limits) if limit >= 2]
        if not todo:
            return found
        widest = max(limits[row] for row in todo)
        redo: dict[int, list[int]] = defaultdict(list)
        first = self._beam_call([pieces[r] for r in todo], widest, patience=1)
        for row, result in zip(todo, first, strict=True):
            pool, limit = _pool(result), limits[row]
            room = widest - 1 if limit == widest else limit - 2
            if not self.exact_limits or self._complete_within(pool, room):
                found[row] = [self._found(hyp, score, limit) for hyp, score in pool]
            else:
                redo[limit].append(row)
        for limit, rows in redo.items():
            results = self._beam_call([pieces[r] for r in rows], limit, patience=2)
            for row, result in zip(rows, results, strict=True):
                pool = self._patience_one_pool(_pool(result))
                found[row] = [self._found(hyp, score, limit) for hyp, score in pool]
        return found

    def _complete_within(self, pool: list[_Scored], steps: int) -> bool:
        """Every hypothesis ended, none longer than `steps` tokens (EOS included)."""
        return all(self._ended(h) for h, _ in pool) and max(len(h) for h, _ in pool) <= steps

    def _patience_one_pool(self, pool: list[_Scored]) -> list[_Scored]:
        """What our beam search ranks, from a search run with patience 2 at the same limit.

        Patience only moves the stopping step: up to it the two searches are the same. With
        patience 1 the search stops at the step t where the beam_size-th hypothesis ends, so
        its pool is the ended hypotheses of length <= t (their length is the step they ended
        at). When fewer than beam_size ended, the search was stopped at the limit; then
        CTranslate2 ranks stopped beams (without the EOS they still owe) with the ended ones,
        and a pool of beam_size (patience 1) could lose an ended hypothesis that ours keeps,
        which the pool of twice that size does not.
        """
        ended = [(hyp, score) for hyp, score in pool if self._ended(hyp)]
        if len(ended) < self.search_settings.beam_size:
            return pool
        stop = sorted(len(hyp) for hyp, _ in ended)[self.search_settings.beam_size - 1]
        return [(hyp, score) for hyp, score in ended if len(hyp) <= stop]

    def _ended(self, hypothesis: list[str]) -> bool:
        return hypothesis[-1:] == [self._eos]

    def _beam_call(self, pieces: list[list[str]], limit: int, patience: int) -> list[Any]:
        settings = self.search_settings
        return self.translator.translate_batch(
            pieces, beam_size=settings.beam_size, patience=patience,
            num_hypotheses=settings.beam_size * patience, **self._decode_options(limit - 1),
        )  # fmt: skip

    def _seeded(
        self, pieces: list[list[str]], limits: list[int], row_ids: Sequence[int]
    ) -> list[list[_Found]]:
        """Each (sentence, draw) sampled by a fresh translator seeded from (seed, row, draw)."""
        seed, draws = self.search_settings.seed, range(self.nbest)
        return [
            [self._draw(source, limit, draw_seed(seed, row, k)) for k in draws]
            for source, limit, row in zip(pieces, limits, row_ids, strict=True)
        ]

    def _draw(self, source: list[str], limit: int, seed: int) -> _Found:
        """One sample of `source` from a translator whose worker thread starts at `seed`
        (`set_random_seed` is process-wide: not safe while another thread samples)."""
        if limit < 2:
            return _Found([], None)
        self._ct2.set_random_seed(seed)
        translator = self._ct2.Translator(str(self.model_dir), **self._options)
        (result,) = translator.translate_batch(
            [source], beam_size=1, **self._sampling_options(), **self._decode_options(limit - 1)
        )
        return self._found(result.hypotheses[0], result.scores[0], limit)

    def _finish(self, pieces: list[list[str]], found: list[list[_Found]]) -> list[list[Hypothesis]]:
        """Hypotheses ranked by our length-normalized score, the n-best kept; those without a
        log-prob rescored with the model's own (teacher-forced, EOS last)."""
        todo = [(row, f.ids) for row, hyps in enumerate(found) for f in hyps if f.log_prob is None]
        rescored = iter(self._rescore([pieces[row] for row, _ in todo], [ids for _, ids in todo]))
        ranked: list[list[Hypothesis]] = []
        for hyps in found:
            done = [
                next(rescored)
                if f.log_prob is None
                else Hypothesis(f.ids, self._score(f.log_prob, f.ids), f.log_prob)
                for f in hyps
            ]
            ranked.append(sorted(done, key=lambda h: -h.score)[: self.nbest])
        return ranked

    def _score(self, log_prob: float, ids: list[int]) -> float:
        return normalized_score(log_prob, len(ids) + 1, self._len_penalty)

    def _rescore(self, sources: list[list[str]], outputs: list[list[int]]) -> list[Hypothesis]:
        """Teacher-forced log-probs of each output and its EOS (`score_batch`), as ours."""
        if not outputs:
            return []
        targets = [[self._tgt_vocab[i] for i in ids] for ids in outputs]
        results = self.translator.score_batch(sources, targets, max_input_length=0)
        return [
            finished_hypothesis(ids, list(r.log_probs), math.fsum(r.log_probs), self._len_penalty)
            for ids, r in zip(outputs, results, strict=True)
        ]


def _pool(result: Any) -> list[_Scored]:
    """The (hypothesis, score) pairs of one `TranslationResult`, best first."""
    return list(zip(result.hypotheses, result.scores, strict=True))


def draw_seed(seed: int, row: int, draw: int) -> int:
    """The 32-bit CTranslate2 seed of draw `draw` of sentence `row`: from the same (seed, row,
    draw) hash as our `draw_generator`, so nearby rows are unrelated."""
    return draw_generator(seed, row, draw, "cpu").initial_seed() % 2**32
