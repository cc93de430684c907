"""Multi30k download: checksum verification, atomic writes, offline errors (fetch is mocked)."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
from pathlib import Path

import pytest

from transformer_mt.data import download
from transformer_mt.data.corpus import Multi30k
from transformer_mt.data.download import DownloadError, download_verified
from transformer_mt.data.readers import CorpusError


def test_known_checksums_are_those_of_the_local_copies(shared_data: Path):
    for name, expected in download.MULTI30K_SHA256.items():
        actual = hashlib.sha256((shared_data / "multi30k" / name).read_bytes()).hexdigest()
        assert actual == expected, name


@pytest.fixture
def fake_remote(monkeypatch, tmp_path: Path) -> dict[str, bytes]:
    """Replace the network with a dict url -> bytes; records requested urls."""
    remote: dict[str, bytes] = {}

    def fetch(url: str, dest: Path) -> None:
        if url not in remote:
            raise urllib.error.URLError("network is unreachable")
        dest.write_bytes(remote[url][: len(remote[url]) // 2])  # a partial write first...
        dest.write_bytes(remote[url])

    monkeypatch.setattr(download, "fetch", fetch)
    return remote


def _serve(remote, monkeypatch, name: str, content: bytes, checksum: bytes | None = None) -> None:
    remote[download.MULTI30K_URL.format(name=name)] = content
    table = dict(download.MULTI30K_SHA256)
    table[name] = hashlib.sha256(checksum if checksum is not None else content).hexdigest()
    monkeypatch.setattr(download, "MULTI30K_SHA256", table)


def test_verified_download_lands_at_final_path(fake_remote, monkeypatch, tmp_path: Path):
    _serve(fake_remote, monkeypatch, "train.en.gz", b"payload")
    path = download_verified("train.en.gz", tmp_path / "multi30k")
    assert path.read_bytes() == b"payload"
    assert [p.name for p in path.parent.iterdir()] == ["train.en.gz"]  # no temporary left


def test_checksum_mismatch_leaves_nothing(fake_remote, monkeypatch, tmp_path: Path):
    _serve(fake_remote, monkeypatch, "train.en.gz", b"tampered", checksum=b"original")
    with pytest.raises(DownloadError, match="sha256 mismatch .* save it as"):
        download_verified("train.en.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_what_to_put_where(fake_remote, tmp_path: Path):
    with pytest.raises(DownloadError) as err:
        download_verified("val.de.gz", tmp_path)
    url = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/val.de.gz"
    assert f"download {url} and save it as {tmp_path / 'val.de.gz'}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_checksum_refused_unless_allowed(fake_remote, tmp_path: Path):
    name = "test_2016_flickr.en.gz"
    fake_remote[download.MULTI30K_URL.format(name=name)] = b"test set"
    with pytest.raises(DownloadError, match="no known sha256"):
        download_verified(name, tmp_path)
    assert download_verified(name, tmp_path, allow_unverified=True).read_bytes() == b"test set"


def _gz(lines: list[str]) -> bytes:
    return gzip.compress("".join(f"{line}\n" for line in lines).encode())


def test_multi30k_downloads_missing_files(fake_remote, monkeypatch, tmp_path: Path):
    for split in ("train", "val"):
        for lang in ("en", "fr"):
            _serve(fake_remote, monkeypatch, f"{split}.{lang}.gz", _gz([f"{split} {lang}"]))
    corpus = Multi30k(tmp_path, "fr", "en", test_sets=None)
    corpus.ensure_files()
    assert sorted(p.name for p in (tmp_path / "multi30k").iterdir()) == [
        "train.en.gz", "train.fr.gz", "val.en.gz", "val.fr.gz",
    ]  # fmt: skip
    assert corpus.source("train").src_path == tmp_path / "multi30k" / "train.fr.gz"


def test_multi30k_without_download_names_missing_file(shared_data: Path, tmp_path: Path):
    corpus = Multi30k(tmp_path, "de", "en", download=False)
    with pytest.raises(CorpusError, match=r"train\.de\.gz.*download is off.*save train\.de\.gz"):
        corpus.ensure_files()


def test_multi30k_missing_test_set_is_unavailable_not_fatal(shared_data: Path):
    corpus = Multi30k(shared_data, "de", "en", download=False)
    corpus.ensure_files()
    assert corpus.source("train") is not None and corpus.source("test_2016_flickr") is None
    assert "test_2016_flickr.de.gz" in corpus.missing_tests["test_2016_flickr"]
    assert corpus.present_tests() == []


def test_multi30k_unknown_language_lists_languages(shared_data: Path):
    with pytest.raises(CorpusError, match=r"no language 'xx'.*de, en, fr.*found in .*de, en, fr"):
        Multi30k(shared_data, "de", "xx", download=False)
    with pytest.raises(CorpusError, match="both 'en'"):
        Multi30k(shared_data, "en", "en")
