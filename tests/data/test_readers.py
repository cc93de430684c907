"""Readers: alignment, line splitting, and the errors for bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from transformer_mt.data import readers
from transformer_mt.data.readers import CorpusError, ReadStats, read_text_pairs, read_tsv_pairs

from .conftest import read_gz_lines, write_lines


def _all_pairs(chunks) -> tuple[list[str], list[str], list[int]]:
    src, tgt, lines = [], [], []
    for chunk in chunks:
        src += chunk.src
        tgt += chunk.tgt
        lines += chunk.line_numbers
    return src, tgt, lines


@pytest.mark.parametrize("block_bytes", [7, 1 << 23])
def test_multi30k_gzip_matches_reference(shared_data: Path, monkeypatch, block_bytes: int):
    """Reading in blocks (even tiny ones splitting lines and UTF-8 characters) loses nothing."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", block_bytes)
    folder = shared_data / "multi30k"
    stats = ReadStats()
    src, tgt, lines = _all_pairs(
        read_text_pairs(folder / "val.de.gz", folder / "val.en.gz", stats, chunk_size=300)
    )
    assert src == read_gz_lines(folder / "val.de.gz")
    assert tgt == read_gz_lines(folder / "val.en.gz")
    assert lines == list(range(1, 1015)) and stats.lines == 1014 and stats.empty_dropped == 0


def test_splits_only_on_newline_and_strips_bom_and_cr(tmp_path: Path):
    """U+2028 / U+0085 / form feed stay inside a line (str.splitlines would split them)."""
    odd = ["a\u2028b", "c\x85d", "e\x0cf", "last"]
    (tmp_path / "s.txt").write_bytes(("\ufeff" + "\r\n".join(odd)).encode())  # no final newline
    write_lines(tmp_path / "t.txt", ["1", "2", "3", "4"])
    src, tgt, _ = _all_pairs(read_text_pairs(tmp_path / "s.txt", tmp_path / "t.txt", ReadStats()))
    assert src == odd and tgt == ["1", "2", "3", "4"]


def test_mismatched_line_counts_names_both_files_and_counts(tmp_path: Path):
    a = write_lines(tmp_path / "a.de", ["x"] * 5)
    with gzip.open(tmp_path / "b.en.gz", "wt") as f:
        f.write("y\n" * 7)
    with pytest.raises(CorpusError) as err:
        _all_pairs(read_text_pairs(a, tmp_path / "b.en.gz", ReadStats(), chunk_size=2))
    msg = str(err.value)
    assert f"{a} has 5 lines" in msg and f"{tmp_path / 'b.en.gz'} has 7 lines" in msg


def test_empty_lines_are_dropped_and_counted(tmp_path: Path):
    a = write_lines(tmp_path / "a", ["one", "", "three", "four", "  "])
    b = write_lines(tmp_path / "b", ["1", "2", "", "4", "5"])
    stats = ReadStats()
    src, tgt, lines = _all_pairs(read_text_pairs(a, b, stats))
    assert (src, tgt, lines) == (["one", "four"], ["1", "4"], [1, 4])
    assert stats.lines == 5 and stats.empty_dropped == 3 and stats.empty_examples == [2, 3, 5]


def test_invalid_utf8_names_file_and_line(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(readers, "BLOCK_BYTES", 16)  # the bad byte sits in a later block
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nanother good\nthird\nbro\xffken\nafter\n")
    write_lines(tmp_path / "ok.txt", ["1", "2", "3", "4", "5"])
    with pytest.raises(CorpusError, match=rf"{bad}:4: invalid UTF-8"):
        _all_pairs(read_text_pairs(tmp_path / "ok.txt", bad, ReadStats()))


def test_tsv_columns_and_empty_line(shared_data: Path, tmp_path: Path):
    path = shared_data / "tatoeba-cmn-eng" / "dev.tsv"
    reference = [line.split("\t") for line in path.read_text("utf-8-sig").split("\n") if line]
    zh, en, _ = _all_pairs(read_tsv_pairs(path, 1, 0, ReadStats()))
    assert en == [row[0] for row in reference] and zh == [row[1] for row in reference]
    tsv = write_lines(tmp_path / "x.tsv", ["a\tb\tc", "", "d\te\tf"])
    stats = ReadStats()
    assert _all_pairs(read_tsv_pairs(tsv, 0, 2, stats))[:2] == (["a", "d"], ["c", "f"])
    assert stats.empty_dropped == 1


def test_tsv_too_few_columns_names_file_line_and_columns(tmp_path: Path):
    tsv = write_lines(tmp_path / "x.tsv", ["a\tb\tc", "only\ttwo"])
    with pytest.raises(CorpusError, match=rf"{tsv}:2: expected at least 3 .* found 2"):
        _all_pairs(read_tsv_pairs(tsv, 0, 2, ReadStats()))


def test_missing_file_lists_what_exists(tmp_path: Path):
    write_lines(tmp_path / "train.de", ["x"])
    write_lines(tmp_path / "train.en", ["y"])
    with pytest.raises(CorpusError, match=r"train\.fr; .* contains: train\.de, train\.en"):
        _all_pairs(read_text_pairs(tmp_path / "train.de", tmp_path / "train.fr", ReadStats()))


@pytest.mark.parametrize("block_bytes", [5, 1 << 23])
def test_a_nul_byte_names_file_and_line(tmp_path: Path, monkeypatch, block_bytes: int):
    """A NUL byte (a binary or UTF-16 file) used to be accepted silently."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", block_bytes)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one\ntwo\nth\x00ree\nfour\n")
    write_lines(tmp_path / "ok.txt", ["1", "2", "3", "4"])
    with pytest.raises(CorpusError, match=rf"{bad}:3: a NUL byte at byte 3 of the line .*UTF-16"):
        _all_pairs(read_text_pairs(tmp_path / "ok.txt", bad, ReadStats()))


@pytest.mark.parametrize("block_bytes", [4, 1 << 23])
def test_cr_only_line_endings_name_file_and_line(tmp_path: Path, monkeypatch, block_bytes: int):
    """Old Mac endings used to show up only as "line counts differ" (the file is one line)."""
    monkeypatch.setattr(readers, "BLOCK_BYTES", block_bytes)
    mac = tmp_path / "mac.txt"
    mac.write_bytes(b"one\rtwo\rthree\r")
    write_lines(tmp_path / "ok.txt", ["1", "2", "3"])
    with pytest.raises(
        CorpusError,
        match=rf"{mac}:1: a carriage return \(\\r\) not followed by "
        r"a newline at byte 4 .*tr '\\r' '\\n'",
    ):
        _all_pairs(read_text_pairs(tmp_path / "ok.txt", mac, ReadStats()))  # fmt: skip
    tsv = tmp_path / "x.tsv"
    tsv.write_bytes(b"a\tb\r\nc\td\r\ne\tf\rg\th\r\n")  # CRLF is fine; one lone \r on line 3
    with pytest.raises(CorpusError, match=rf"{tsv}:3: a carriage return"):
        _all_pairs(read_tsv_pairs(tsv, 0, 1, ReadStats()))
