"""The pretrained embedding matrix: row i is the vector of token id i, with a covered-row mask.

Written as ``<stem>.npy`` (float32, (V, d)) plus ``<stem>.json`` (mask and settings), each
atomically (temp file + rename); the JSON goes last, so a matrix without its JSON is incomplete.
"""

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gensim.models import KeyedVectors

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID

SPECIAL_IDS = frozenset((PAD_ID, UNK_ID, BOS_ID, EOS_ID))
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PretrainedEmbeddings:
    """matrix (V, d) float32, zero where not covered; covered (V,) bool."""

    matrix: np.ndarray
    covered: np.ndarray
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.covered.shape != (self.matrix.shape[0],):
            raise ValueError(
                "matrix must be (V, d) and covered (V,), "
                f"got {self.matrix.shape} and {self.covered.shape}"
            )

    @property
    def vocab_size(self) -> int:
        return self.matrix.shape[0]

    @property
    def d(self) -> int:
        return self.matrix.shape[1]

    def check_shape(
        self, vocab_size: int, d_model: int, source: str = "pretrained embeddings"
    ) -> None:
        """Fail clearly when the matrix does not fit the model it is meant to initialise."""
        if self.d != d_model:
            raise ValueError(
                f"{source}: vectors have size {self.d} but d_model={d_model}; rerun "
                f"pretrain_embeddings.py with d_model={d_model}"
            )
        if self.vocab_size != vocab_size:
            raise ValueError(
                f"{source}: {self.vocab_size} rows but the vocabulary has {vocab_size} pieces; "
                "the embeddings were trained with a different SentencePiece model"
            )


def build_embedding_matrix(
    vectors: KeyedVectors,
    id_to_piece: Mapping[int, str],
    vocab_size: int,
    d_model: int,
    settings: dict | None = None,
) -> PretrainedEmbeddings:
    """Row i = gensim's vector of piece ``id_to_piece[i]``.

    Uncovered (zero) rows: the special ids 0-3, ids missing from ``id_to_piece`` and pieces gensim
    has no vector for (below min_count). ``settings`` are kept with the matrix.
    """
    if vectors.vector_size != d_model:
        raise ValueError(
            f"Word2Vec vector_size={vectors.vector_size} does not match d_model={d_model}; "
            "set embeddings.vector_size to the model's d_model"
        )
    bad = [i for i in id_to_piece if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"id_to_piece has ids outside [0, {vocab_size}): {sorted(bad)[:10]}")
    matrix = np.zeros((vocab_size, d_model), dtype=np.float32)
    covered = np.zeros(vocab_size, dtype=bool)
    for i, piece in id_to_piece.items():
        if i not in SPECIAL_IDS and piece in vectors.key_to_index:
            matrix[i] = vectors[piece]
            covered[i] = True
    return PretrainedEmbeddings(matrix=matrix, covered=covered, settings=dict(settings or {}))


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(emb: PretrainedEmbeddings, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.npy`` and ``stem.json``; returns both paths."""
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")

    def write_npy(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object, so numpy does not append ".npy" to the temp name
            np.save(f, emb.matrix.astype(np.float32))

    info = {
        "format_version": FORMAT_VERSION,
        "matrix": npy.name,
        "vocab_size": emb.vocab_size,
        "d": emb.d,
        "num_covered": int(emb.covered.sum()),
        "covered": emb.covered.astype(int).tolist(),
        "settings": emb.settings,
    }
    write_atomic(npy, write_npy)
    write_atomic(meta, lambda tmp: tmp.write_text(json.dumps(info, ensure_ascii=False, indent=1)))
    return npy, meta


def load_pretrained(stem: Path | str) -> PretrainedEmbeddings:
    """Read what :func:`save_pretrained` wrote (``stem`` with or without a suffix)."""
    stem = Path(stem)
    meta = stem.with_suffix(".json")
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: no such file (run pretrain_embeddings.py first)")
    info = json.loads(meta.read_text())
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta}: format_version {info.get('format_version')}, expected {FORMAT_VERSION}"
        )
    npy = meta.with_name(info["matrix"])
    matrix = np.load(npy)
    if matrix.shape != (info["vocab_size"], info["d"]):
        raise ValueError(
            f"{npy}: shape {matrix.shape}, but {meta} says ({info['vocab_size']}, {info['d']})"
        )
    return PretrainedEmbeddings(
        matrix=matrix, covered=np.asarray(info["covered"], dtype=bool), settings=info["settings"]
    )


@torch.no_grad()
def copy_into_embedding_(
    weight: torch.Tensor, emb: PretrainedEmbeddings, match_scale: bool = True
) -> int:
    """Overwrite the covered rows of an embedding weight (V, d) in place; returns how many.

    Special tokens and uncovered pieces keep their usual initialisation. With ``match_scale`` the
    Word2Vec rows are rescaled to the root-mean-square of the rows they replace, so the
    embeddings (later multiplied by sqrt(d_model)) start at the scale the model expects.
    """
    emb.check_shape(weight.shape[0], weight.shape[1])
    rows = torch.from_numpy(emb.covered).nonzero().squeeze(1).to(weight.device)  # (N,)
    if len(rows) == 0:
        return 0
    new = torch.from_numpy(emb.matrix).to(weight)[rows]  # (N, d)
    if match_scale:
        new = new * (weight[rows].pow(2).mean().sqrt() / new.pow(2).mean().sqrt())
    weight[rows] = new
    return len(rows)
