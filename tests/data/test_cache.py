"""Cache location: never inside a read-only data root; atomic publication."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformer_mt.data import cache


def test_read_only_data_root_is_never_used(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "corpora"
    root.mkdir()
    root.chmod(0o555)
    try:
        assert cache.resolve_cache_dir(None, root) == tmp_path / "home/.cache/transformer_mt"
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)
    assert cache.resolve_cache_dir(None, root) == root / ".cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "env"))
    assert cache.resolve_cache_dir(None, root) == tmp_path / "env"
    assert cache.resolve_cache_dir(tmp_path / "given", root) == tmp_path / "given"


def test_failed_build_publishes_nothing(tmp_path: Path):
    def build(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.build_atomically(tmp_path / "entry", build)
    assert list(tmp_path.iterdir()) == []
    done = cache.build_atomically(tmp_path / "entry", lambda f: (f / "ok").write_text("1"))
    assert (done / "ok").read_text() == "1"
