"""Corpus-level BLEU / chrF / TER with sacrebleu, and gathering decodes across DDP ranks.

Scores are computed on detokenized strings against the raw references, so they are
comparable across papers that report sacreBLEU; the signatures say exactly how.
"""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch.distributed as dist
from sacrebleu.metrics import BLEU, CHRF, TER


@dataclass(frozen=True)
class CorpusScores:
    """Corpus scores (0-100) and the sacrebleu signature of each.

    BLEU's brevity penalty and the two lengths (in BLEU tokens) come with it: a decoder that
    stops early loses BLEU to the penalty, not to precision, and only these numbers show which.
    """

    bleu: float
    bleu_brevity_penalty: float
    hyp_len: int
    ref_len: int
    chrf: float
    ter: float
    bleu_signature: str
    chrf_signature: str
    ter_signature: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def corpus_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    bleu_tokenize: str = "13a",
    lowercase: bool = False,
) -> CorpusScores:
    """Score detokenized hypotheses against one reference each (same order).

    Args:
        bleu_tokenize: sacrebleu's BLEU tokenizer: ``13a`` (default, WMT), ``zh`` for Chinese
            targets, ``ja-mecab``, ``intl``, ``char``... (TER follows it for CJK targets).
        lowercase: case-insensitive BLEU (the "tokenized lowercased" figure many MT papers
            report). chrF is always cased; TER always case-insensitive, sacrebleu's defaults.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: they must align"
        )
    if bleu_tokenize not in BLEU.TOKENIZERS:
        raise ValueError(
            f"unknown BLEU tokenizer {bleu_tokenize!r}; valid: {', '.join(BLEU.TOKENIZERS)}"
        )
    refs = [list(references)]
    bleu = BLEU(tokenize=bleu_tokenize, lowercase=lowercase)
    chrf = CHRF()
    ter = TER(asian_support=bleu_tokenize in ("zh", "ja-mecab"))
    bleu_score = bleu.corpus_score(hypotheses, refs)
    return CorpusScores(
        bleu=bleu_score.score,
        bleu_brevity_penalty=bleu_score.bp,
        hyp_len=bleu_score.sys_len,
        ref_len=bleu_score.ref_len,
        chrf=chrf.corpus_score(hypotheses, refs).score,
        ter=ter.corpus_score(hypotheses, refs).score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        ter_signature=str(ter.get_signature()),
    )


def gather_translations(local: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Merge (line index, hypothesis) pairs from every DDP rank; every rank gets all of them.

    A line decoded on two ranks (a sampler that pads its last shard) counts once.
    """
    pairs = list(local)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shards: list[list[tuple[int, str]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, pairs)
        pairs = [pair for shard in shards for pair in (shard or [])]
    return dict(pairs)
