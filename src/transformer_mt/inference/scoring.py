"""What `evaluate.py` reads, how it scores, and what it reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from transformer_mt.training.metrics import corpus_scores
from transformer_mt.utils.io import read_lines


def read_inputs(
    *,
    split: str | None,
    input: str | None,  # noqa: A002 - the config key users type
    reference: str | None,
    datamodule: Callable[[], Any] | None,
) -> tuple[list[str], list[str] | None]:
    """Source lines and (if known) their references, from a data split or text files.

    `datamodule` builds the data config's module (only called for `split`).
    """
    if (split is None) == (input is None):
        raise ValueError(
            "give exactly one of split=<val|test> (with data=..., e.g. data=multi30k_en_de "
            "split=val) or input=<file> (with reference=<file> to score)"
        )
    if input is not None:
        sources = read_lines(input)
        if reference is None:
            return sources, None
        references = read_lines(reference)
        if len(references) != len(sources):
            raise ValueError(
                f"{input} has {len(sources)} lines but {reference} has {len(references)}"
            )
        return sources, references
    if datamodule is None:
        raise ValueError(f"split={split} needs a data config, e.g. data=multi30k_en_de")
    module = datamodule()
    if not module.has_split(split):
        missing = getattr(module, "missing_test_splits", {})
        if split in missing:
            raise ValueError(f"split={split} is absent: {missing[split]}")
        present = ["val", *getattr(module, "test_splits", [])]
        raise ValueError(f"the data config has no {split!r} split; it has: {', '.join(present)}")
    return module.sources(split), module.references(split)


def score(hypotheses: list[str], references: list[str], tokenize: str) -> dict[str, Any]:
    """Cased detokenized BLEU, chrF and TER, and tokenized-lowercased BLEU beside them.

    Papers on Multi30k (and WMT before sacreBLEU) report BLEU on tokenized, lowercased text;
    sacrebleu's own tokenizer (13a, or `tokenize` as chosen) with lowercase=True is the
    reproducible stand-in, and its signature (`case:lc`) says so.
    """
    cased = corpus_scores(hypotheses, references, bleu_tokenize=tokenize)
    lowercased = corpus_scores(hypotheses, references, bleu_tokenize=tokenize, lowercase=True)
    return {
        **cased.as_dict(),
        "bleu_lc": lowercased.bleu,
        "bleu_lc_signature": lowercased.bleu_signature,
    }


def report(scores: dict[str, Any], n: int, console: Console | None = None) -> None:
    """The scores as a table, with their signatures and BLEU's brevity penalty."""
    table = Table(title=f"{n} sentences")
    for column in ("metric", "score", "sacrebleu signature"):
        table.add_column(column)
    rows = {"BLEU": "bleu", "BLEU lowercased": "bleu_lc", "chrF": "chrf", "TER": "ter"}
    for name, key in rows.items():
        table.add_row(name, f"{scores[key]:.2f}", str(scores[f"{key}_signature"]))
    hyp_len, ref_len = scores["hyp_len"], scores["ref_len"]
    table.add_row(
        "BLEU brevity penalty",
        f"{scores['bleu_brevity_penalty']:.3f}",
        f"ratio {hyp_len / max(ref_len, 1):.3f} (hyp_len {hyp_len}, ref_len {ref_len})",
    )
    (console or Console()).print(table)
