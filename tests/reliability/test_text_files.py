"""Text files given to evaluate.py / translate.py (input=, reference=) get the corpus checks:
a NUL byte or a lone carriage return is named with its file and line, CRLF is fine."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformer_mt.utils.io import read_lines, write_text_atomic


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"one\ntwo\x00\n", r":2: a NUL byte at byte 4 of the line \(a binary or UTF-16 file"),
        (b"one\rtwo\r", r":1: a carriage return \(\\r\) not followed by a newline at byte 4"),
        ("ab\n".encode("utf-16"), r":1: a NUL byte"),
    ],
)
def test_bad_bytes_are_named_with_file_and_line(data: bytes, message: str, tmp_path: Path):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"^{path}{message}"):
        read_lines(path)


def test_crlf_lines_are_read_without_their_cr(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"one\r\ntwo\r\n")
    assert read_lines(path) == ["one", "two"]


def test_an_atomic_text_write_leaves_only_the_file(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "out" / "hypotheses.txt", "a\n")
    write_text_atomic(tmp_path / "out" / "hypotheses.txt", "b\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hypotheses.txt"]
    assert (tmp_path / "out" / "hypotheses.txt").read_text() == "b\n"
