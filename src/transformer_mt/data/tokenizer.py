"""SentencePiece vocabularies with the project's fixed special ids, trained once and cached.

Ids (ARCHITECTURE.md): <pad> 0, <unk> 1, <s> 2, </s> 3, set in the SentencePiece model itself
so that every id the model sees is the id SentencePiece encodes. Source sequences end with
</s>; target sequences are stored as pieces only and the batcher adds <s> and </s>.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe")
SPECIAL_IDS = frozenset((PAD_ID, BOS_ID, EOS_ID))
_STATE_VERSION = 1


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings; any change gives a new cache key, hence a retrained model."""

    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000  # joint vocabulary, or the source one when joint=False
    joint: bool = True  # one vocabulary for both languages (allows shared embeddings)
    character_coverage: float = 1.0  # 0.9995 suits Chinese/Japanese
    tgt_vocab_size: int | None = None  # only when joint=False; default vocab_size
    tgt_character_coverage: float | None = None  # only when joint=False
    input_sentence_size: int = 2_000_000  # sentences sampled for training (0 = all)
    seed: int = 1  # SentencePiece's sampling seed

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type={self.model_type!r}; valid: {', '.join(MODEL_TYPES)}")
        if self.vocab_size < 8:
            raise ValueError(f"vocab_size={self.vocab_size} must be at least 8")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage={self.character_coverage} must be in (0, 1]")
        if self.joint and (self.tgt_vocab_size or self.tgt_character_coverage):
            raise ValueError("tgt_vocab_size/tgt_character_coverage need joint=false")

    def side(self, tgt: bool) -> tuple[int, float]:
        """(vocab_size, character_coverage) for one side."""
        if tgt:
            return (
                self.tgt_vocab_size or self.vocab_size,
                self.tgt_character_coverage or self.character_coverage,
            )
        return self.vocab_size, self.character_coverage


def _check_ids(processor: spm.SentencePieceProcessor) -> spm.SentencePieceProcessor:
    ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise ValueError(f"SentencePiece model has pad/unk/bos/eos ids {ids}, expected 0/1/2/3")
    return processor


def _load(proto: bytes) -> spm.SentencePieceProcessor:
    return _check_ids(spm.SentencePieceProcessor(model_proto=proto))


def _segmenter(proto: bytes) -> spm.SentencePieceProcessor:
    """A SentencePiece model used only to split text into pieces (its ids are not ours)."""
    return spm.SentencePieceProcessor(model_proto=proto)


SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>")
"""The pieces of ids 0-3 in a vocabulary of this project (ARCHITECTURE.md)."""


class Vocabulary:
    """A token id <-> piece table that is not a SentencePiece model's own (an imported
    model's, e.g. Marian's vocab.json with its rows remapped to our special ids)."""

    def __init__(self, pieces: list[str]) -> None:
        if tuple(pieces[:4]) != SPECIAL_PIECES:
            raise ValueError(f"a vocabulary starts with {SPECIAL_PIECES}, got {pieces[:4]}")
        self.pieces = list(pieces)
        self.index = {piece: i for i, piece in enumerate(self.pieces)}
        if len(self.index) != len(self.pieces):
            raise ValueError("a vocabulary's pieces must be unique")

    def ids(self, pieces: list[str]) -> list[int]:
        """Ids of pieces; a piece the table lacks is <unk>, as Marian's tokenizer does."""
        return [self.index.get(piece, UNK_ID) for piece in pieces]


class Tokenizer:
    """Source and target SentencePiece models (the same one when there is one).

    A token's id is its SentencePiece id: our models are trained with the fixed special ids.
    An imported model brings its own id table instead: `vocab` (the piece of every id, ours
    first: <pad> <unk> <s> </s>) and `tgt_vocab` when target ids are another table; the
    SentencePiece models then only split text into pieces. `joint` means one id table for
    both sides (what shared embeddings need).
    """

    def __init__(
        self,
        src_proto: bytes,
        tgt_proto: bytes | None = None,
        num_threads: int = 0,
        *,
        vocab: list[str] | None = None,
        tgt_vocab: list[str] | None = None,
    ) -> None:
        if vocab is None and tgt_vocab is not None:
            raise ValueError("tgt_vocab needs vocab (the source side's table)")
        self._protos = (src_proto, tgt_proto)
        load = _load if vocab is None else _segmenter
        self._src = load(src_proto)
        self._tgt = self._src if tgt_proto is None else load(tgt_proto)
        self._vocabs = (vocab, tgt_vocab)
        self._src_table = None if vocab is None else Vocabulary(vocab)
        self._tgt_table = self._src_table if tgt_vocab is None else Vocabulary(tgt_vocab)
        self.joint = tgt_proto is None if vocab is None else tgt_vocab is None
        self.num_threads = num_threads or (os.cpu_count() or 1)

    @property
    def src_vocab_size(self) -> int:
        return len(self._src_table.pieces) if self._src_table else self._src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return len(self._tgt_table.pieces) if self._tgt_table else self._tgt.get_piece_size()

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        """Source ids: pieces + [EOS_ID]."""
        if self._src_table is None:
            return self._src.encode(lines, out_type=int, add_eos=True, num_threads=self.num_threads)
        return [[*ids, EOS_ID] for ids in self._table_ids(self._src, self._src_table, lines)]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        """Target ids: pieces only (the batcher adds BOS/EOS)."""
        if self._tgt_table is None:
            return self._tgt.encode(lines, out_type=int, num_threads=self.num_threads)
        return self._table_ids(self._tgt, self._tgt_table, lines)

    def _table_ids(
        self, processor: spm.SentencePieceProcessor, table: Vocabulary, lines: list[str]
    ) -> list[list[int]]:
        """Ids through an imported table. A leading language tag (``>>fra<<``, which
        multilingual Marian models read) stays one token, as Marian's tokenizer keeps it."""
        out = []
        for line in lines:
            tag, text = _language_tag(line)
            pieces = processor.encode(text, out_type=str)
            out.append(table.ids(([tag] if tag else []) + pieces))
        return out

    def decode_tgt(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """Detokenized target text (for sacrebleu); <pad>, <s> and </s> are dropped."""
        kept = [[int(i) for i in seq if int(i) not in SPECIAL_IDS] for seq in ids]
        if self._tgt_table is None:
            return self._tgt.decode(kept)
        pieces = self._tgt_table.pieces
        return self._tgt.decode([[pieces[i] for i in seq] for seq in kept])

    def src_pieces(self, line: str) -> list[str]:
        """The pieces of `encode_src(line)`, including the final </s>."""
        if self._src_table is None:
            return self._src.encode(line, out_type=str, add_eos=True)
        return [self._src_table.pieces[i] for i in self.encode_src([line])[0]]

    def tgt_pieces(self, ids: Iterable[int]) -> list[str]:
        if self._tgt_table is None:
            return [self._tgt.id_to_piece(int(i)) for i in ids]
        return [self._tgt_table.pieces[int(i)] for i in ids]

    def src_vocabulary(self) -> list[str]:
        """Source piece strings in id order (pieces are unique: piece i <-> id i)."""
        if self._src_table is not None:
            return list(self._src_table.pieces)
        return [self._src.id_to_piece(i) for i in range(self.src_vocab_size)]

    def tgt_vocabulary(self) -> list[str]:
        """Target piece strings in id order."""
        if self._tgt_table is not None:
            return list(self._tgt_table.pieces)
        return [self._tgt.id_to_piece(i) for i in range(self.tgt_vocab_size)]

    def fingerprint(self) -> str:
        """sha256 of the models (and id tables): prepared arrays are only valid for these."""
        digest = hashlib.sha256()
        for proto in self._protos:
            digest.update(proto or b"")
        for vocab in self._vocabs:
            if vocab is not None:
                digest.update(json.dumps(vocab, ensure_ascii=False).encode())
        return digest.hexdigest()

    def to_state(self) -> dict:
        """Serialized SentencePiece protos (and id tables), enough to rebuild this tokenizer
        from a checkpoint."""
        state = {"version": _STATE_VERSION, "src_model": self._protos[0],
                 "tgt_model": self._protos[1]}  # fmt: skip
        if self._vocabs[0] is not None:
            state |= {"version": 2, "vocab": self._vocabs[0], "tgt_vocab": self._vocabs[1]}
        return state

    @classmethod
    def from_state(cls, state: dict) -> Tokenizer:
        if state.get("version") not in (_STATE_VERSION, 2):
            raise ValueError(f"tokenizer state version {state.get('version')}, expected 1 or 2")
        return cls(state["src_model"], state["tgt_model"], vocab=state.get("vocab"),
                   tgt_vocab=state.get("tgt_vocab"))  # fmt: skip

    def save(self, folder: Path) -> dict[str, str | None]:
        """Write `src.model` (and `tgt.model`, `vocab.json`, `tgt_vocab.json` when there are
        such) into `folder`; return the name written for each, None for those absent."""
        folder.mkdir(parents=True, exist_ok=True)
        names: dict[str, str | None] = dict.fromkeys(_FILES)
        for key, content in zip(_FILES, (*self._protos, *self._vocabs), strict=True):
            if content is None:
                continue
            data = content if isinstance(content, bytes) else _json_bytes(content)
            (folder / _FILES[key]).write_bytes(data)
            names[key] = _FILES[key]
        return names

    @classmethod
    def load(cls, folder: Path, names: dict[str, str | None] | None = None) -> Tokenizer:
        """Read what `save` wrote (`names`: its return value; default: the files present)."""
        if names is None:
            names = {k: f for k, f in _FILES.items() if k == "src" or (folder / f).is_file()}
        content = {k: (folder / f).read_bytes() if f else None for k, f in names.items()}
        vocab, tgt_vocab = (json.loads(content[k]) if content.get(k) else None
                            for k in ("vocab", "tgt_vocab"))  # fmt: skip
        return cls(content["src"], content.get("tgt"), vocab=vocab, tgt_vocab=tgt_vocab)


_FILES = {"src": "src.model", "tgt": "tgt.model", "vocab": "vocab.json",
          "tgt_vocab": "tgt_vocab.json"}  # fmt: skip


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=0) + "\n").encode("utf-8")


def _language_tag(line: str) -> tuple[str | None, str]:
    """(">>fra<<", rest) for a line that starts with a Marian language tag, else (None, line)."""
    if line.startswith(">>") and (end := line.find("<<", 2)) != -1:
        return line[: end + 2], line[end + 2 :]
    return None, line


def train_sentencepiece(
    sentences: Iterator[str], vocab_size: int, coverage: float, config: TokenizerConfig
) -> bytes:
    """Train one SentencePiece model on `sentences` and return its serialized proto."""
    proto = io.BytesIO()
    spm.set_random_generator_seed(config.seed)  # sentence sampling is seeded, hence repeatable
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=proto,
            model_type=config.model_type,
            vocab_size=vocab_size,
            character_coverage=coverage,
            input_sentence_size=config.input_sentence_size,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=1_000_000,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )  # fmt: skip
    except RuntimeError as err:
        raise ValueError(
            f"SentencePiece training failed (vocab_size={vocab_size}, "
            f"model_type={config.model_type}): {err}"
        ) from None
    return proto.getvalue()
