"""What the pretrained vectors look like: nearest neighbours of probe words, vocabulary coverage."""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from gensim.models import KeyedVectors
from rich.console import Console
from rich.table import Table

from transformer_mt.word2vec.matrix import SPECIAL_IDS, PretrainedEmbeddings

WORD_START = "\u2581"  # SentencePiece's "▁", marking a piece that begins a word


@dataclass(frozen=True)
class ProbeNeighbours:
    probe: str
    piece: str  # the piece that stands for the probe ("▁dog" for "dog")
    neighbours: list[tuple[str, float]]  # (piece, cosine similarity), most similar first


@dataclass(frozen=True)
class Coverage:
    vocab_size: int
    covered_rows: int  # rows with a Word2Vec vector
    coverable_rows: int  # vocab_size minus the 4 special ids
    corpus_tokens: int
    covered_tokens: int  # corpus tokens whose piece has a vector

    @property
    def row_fraction(self) -> float:
        return self.covered_rows / max(self.coverable_rows, 1)

    @property
    def token_fraction(self) -> float:
        return self.covered_tokens / max(self.corpus_tokens, 1)


def probe_piece(vectors: KeyedVectors, probe: str) -> str | None:
    """The piece for a probe word: the word-initial piece ``▁word`` if it has a vector, else the
    bare piece (a Chinese character inside a word), else None."""
    for piece in (WORD_START + probe, probe):
        if piece in vectors.key_to_index:
            return piece
    return None


def nearest_neighbours(
    vectors: KeyedVectors, probes: Iterable[str], topn: int = 8
) -> list[ProbeNeighbours]:
    """Cosine nearest neighbours of every probe that has a vector; the others are skipped."""
    found = []
    for probe in probes:
        piece = probe_piece(vectors, probe)
        if piece is not None:
            pairs = [(p, float(s)) for p, s in vectors.most_similar(piece, topn=topn)]
            found.append(ProbeNeighbours(probe=probe, piece=piece, neighbours=pairs))
    return found


def coverage(
    emb: PretrainedEmbeddings, sentences: Sequence[Sequence[str]], vectors: KeyedVectors
) -> Coverage:
    """Row coverage of the matrix and token coverage of the corpus it was trained on."""
    tokens = sum(len(s) for s in sentences)
    covered_tokens = sum(p in vectors.key_to_index for s in sentences for p in s)
    return Coverage(
        vocab_size=emb.vocab_size,
        covered_rows=int(emb.covered.sum()),
        coverable_rows=emb.vocab_size - len(SPECIAL_IDS),
        corpus_tokens=tokens,
        covered_tokens=covered_tokens,
    )


def report_dict(name: str, neighbours: list[ProbeNeighbours], cov: Coverage, speed: dict) -> dict:
    """JSON-ready summary of one matrix."""
    return {
        "name": name,
        "coverage": {
            **asdict(cov),
            "row_fraction": cov.row_fraction,
            "token_fraction": cov.token_fraction,
        },
        "throughput": speed,
        "neighbours": [asdict(n) for n in neighbours],
    }


def render_report(console: Console, report: dict) -> None:
    """Rich tables: coverage and speed, then the neighbours of each probe."""
    cov, speed = report["coverage"], report["throughput"]
    summary = Table(title=f"Word2Vec [{report['name']}]", show_header=False)
    summary.add_row(
        "rows covered",
        f"{cov['covered_rows']} / {cov['coverable_rows']} ({cov['row_fraction']:.1%})",
    )
    summary.add_row(
        "corpus tokens covered",
        f"{cov['covered_tokens']} / {cov['corpus_tokens']} ({cov['token_fraction']:.1%})",
    )
    summary.add_row(
        "gensim speed", f"{speed['words_per_second']:,.0f} pieces/s ({speed['seconds']:.2f} s)"
    )
    console.print(summary)
    for probe in report["neighbours"]:
        table = Table(title=f"nearest to {probe['piece']!r} ({probe['probe']})")
        table.add_column("piece")
        table.add_column("cosine", justify="right")
        for piece, sim in probe["neighbours"]:
            table.add_row(piece, f"{sim:.3f}")
        console.print(table)
    if not report["neighbours"]:
        console.print("[yellow]none of the probe words has a vector in this vocabulary[/]")
