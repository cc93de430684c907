"""From a tokenizer and the training split to saved matrices and a report.

The tokenizer is anything with the data contract's methods (``transformer_mt.data.Tokenizer``);
the id -> piece map is read from the aligned ids and pieces of the corpus itself, so pieces never
seen in training are simply uncovered.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rich.console import Console

from transformer_mt.word2vec.gensim_trainer import Word2VecSettings, train_gensim
from transformer_mt.word2vec.matrix import (
    SPECIAL_IDS,
    build_embedding_matrix,
    save_pretrained,
    write_atomic,
)
from transformer_mt.word2vec.report import coverage, nearest_neighbours, render_report, report_dict


class PieceTokenizer(Protocol):
    """The part of the data contract's Tokenizer used here."""

    joint: bool

    @property
    def src_vocab_size(self) -> int: ...
    @property
    def tgt_vocab_size(self) -> int: ...
    def encode_src(self, lines: list[str]) -> list[list[int]]: ...
    def encode_tgt(self, lines: list[str]) -> list[list[int]]: ...
    def src_pieces(self, line: str) -> list[str]: ...
    def tgt_pieces(self, ids: list[int]) -> list[str]: ...


@dataclass
class PieceCorpus:
    """Sentences of pieces (specials dropped) and the id of every piece in them."""

    sentences: list[list[str]]
    id_to_piece: dict[int, str]
    vocab_size: int

    def add(
        self, ids_lines: Sequence[Sequence[int]], piece_lines: Sequence[Sequence[str]], where: str
    ) -> None:
        """Append aligned lines; ``where`` names the corpus in error messages."""
        for n, (ids, pieces) in enumerate(zip(ids_lines, piece_lines, strict=True), start=1):
            if len(ids) != len(pieces):
                raise ValueError(
                    f"{where}, line {n}: {len(ids)} ids but {len(pieces)} pieces {pieces!r}"
                )
            sentence = []
            for i, piece in zip(ids, pieces, strict=True):
                if i in SPECIAL_IDS:
                    continue
                if self.id_to_piece.setdefault(i, piece) != piece:
                    raise ValueError(
                        f"{where}, line {n}: id {i} is {piece!r} here "
                        f"but {self.id_to_piece[i]!r} on an earlier line"
                    )
                sentence.append(piece)
            self.sentences.append(sentence)


def source_corpus(
    tokenizer: PieceTokenizer, lines: list[str], corpus: PieceCorpus | None = None
) -> PieceCorpus:
    corpus = corpus or PieceCorpus([], {}, tokenizer.src_vocab_size)
    corpus.add(
        tokenizer.encode_src(lines), [tokenizer.src_pieces(line) for line in lines], "source train"
    )
    return corpus


def target_corpus(
    tokenizer: PieceTokenizer, lines: list[str], corpus: PieceCorpus | None = None
) -> PieceCorpus:
    corpus = corpus or PieceCorpus([], {}, tokenizer.tgt_vocab_size)
    ids = tokenizer.encode_tgt(lines)
    corpus.add(ids, [tokenizer.tgt_pieces(seq) for seq in ids], "target train")
    return corpus


def split_corpora(
    tokenizer: PieceTokenizer, src_lines: list[str], tgt_lines: list[str]
) -> dict[str, PieceCorpus]:
    """One shared corpus (both sides) for a joint vocabulary, else one per side."""
    if tokenizer.joint:
        return {"shared": target_corpus(tokenizer, tgt_lines, source_corpus(tokenizer, src_lines))}
    return {"src": source_corpus(tokenizer, src_lines), "tgt": target_corpus(tokenizer, tgt_lines)}


def pretrain_corpus(
    name: str,
    corpus: PieceCorpus,
    settings: Word2VecSettings,
    out_dir: Path,
    probes: Sequence[str],
    tokenizer_fingerprint: str | None = None,
) -> dict:
    """Train, write ``out_dir/<name>.npy`` and ``.json``, return the report entry.

    The tokenizer's fingerprint goes into the matrix's settings, so that training checks the
    rows belong to its own SentencePiece models.
    """
    result = train_gensim(corpus.sentences, settings)
    emb = build_embedding_matrix(
        result.vectors,
        corpus.id_to_piece,
        corpus.vocab_size,
        settings.vector_size,
        {**settings.to_dict(), "tokenizer": tokenizer_fingerprint},
    )
    save_pretrained(emb, out_dir / name)
    speed = {
        "seconds": result.seconds,
        "raw_words": result.raw_words,
        "effective_words": result.effective_words,
        "words_per_second": result.words_per_second,
        "workers": settings.workers,
    }
    cov = coverage(emb, corpus.sentences, result.vectors)
    return report_dict(name, nearest_neighbours(result.vectors, probes), cov, speed)


def pretrain_embeddings(
    tokenizer: PieceTokenizer,
    src_lines: list[str],
    tgt_lines: list[str],
    settings: Word2VecSettings,
    out_dir: Path,
    probes: Sequence[str] = (),
    console: Console | None = None,
    tokenizer_fingerprint: str | None = None,
) -> list[dict]:
    """Word2Vec on the training split's pieces; writes the matrices and report.json / report.txt."""
    console = console or Console(record=True)
    reports = []
    for name, corpus in split_corpora(tokenizer, src_lines, tgt_lines).items():
        reports.append(
            pretrain_corpus(name, corpus, settings, out_dir, probes, tokenizer_fingerprint)
        )
        render_report(console, reports[-1])
    text = json.dumps(
        {"settings": settings.to_dict(), "matrices": reports}, ensure_ascii=False, indent=1
    )
    write_atomic(out_dir / "report.json", lambda tmp: tmp.write_text(text))
    if console.record:
        write_atomic(out_dir / "report.txt", lambda tmp: tmp.write_text(console.export_text()))
    return reports
