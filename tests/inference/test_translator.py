"""The translator on a trained model: batching and order, empty lines, long lines, n-best,
seeded sampling, and the streaming reader."""

import logging
import os
import threading

import pytest
import torch

from transformer_mt.decoding import BeamSearch, GreedySearch, Sampling
from transformer_mt.inference import Candidate, TorchBackend, Translation, Translator
from transformer_mt.inference.streaming import format_translation, line_chunks
from transformer_mt.inference.translator import token_budget_batches


class SpyBackend:
    """Wraps a backend and records every batch it is asked to search."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    @property
    def max_source_len(self):
        return self.inner.max_source_len

    @property
    def nbest(self):
        return self.inner.nbest

    def search(self, sources, row_ids):
        self.batches.append([list(s) for s in sources])
        return self.inner.search(sources, row_ids)


@pytest.fixture(scope="module")
def lines(synthetic_corpus):
    return [source for source, _ in synthetic_corpus["val"]]


def one_by_one(model, tokenizer, search, lines):
    """The independent reference: each sentence alone (no padding, no batch neighbours)."""
    out = []
    for line in lines:
        src = torch.tensor([tokenizer.encode_src([line])[0]])
        out.append(tokenizer.decode_tgt([search(model, src)[0][0].tokens])[0])
    return out


@pytest.mark.parametrize("search", [GreedySearch(), BeamSearch(beam_size=4)], ids=str)
def test_batched_translation_in_input_order_equals_one_by_one(
    trained_tiny, synthetic_tokenizer, lines, search
):
    model = trained_tiny()
    spy = SpyBackend(TorchBackend(model, search))
    translator = Translator(synthetic_tokenizer, spy, max_tokens=80)
    out = translator.translate(lines)
    assert [t.line for t in out] == list(range(len(lines)))
    assert [t.source for t in out] == lines
    assert [t.text for t in out] == one_by_one(model, synthetic_tokenizer, search, lines)
    assert len(spy.batches) > 2  # really batched, several sentences per batch
    for batch in spy.batches:
        padded = len(batch) * max(map(len, batch))
        assert len(batch) == 1 or padded <= 80
    # sorted by length: each batch's longest is no longer than the next batch's shortest
    for a, b in zip(spy.batches, spy.batches[1:], strict=False):
        assert max(map(len, a)) <= min(map(len, b))


def test_empty_and_blank_lines_keep_alignment_and_skip_the_model(
    trained_tiny, synthetic_tokenizer, lines
):
    spy = SpyBackend(TorchBackend(trained_tiny(), GreedySearch()))
    mixed = [lines[0], "", "   \t", lines[1], ""]
    out = Translator(synthetic_tokenizer, spy).translate(mixed)
    assert [t.text for t in out] == [out[0].text, "", "", out[3].text, ""]
    assert out[0].text and out[3].text
    assert sum(len(b) for b in spy.batches) == 2
    assert Translator(synthetic_tokenizer, spy).translate(["", " "])[1].candidates == [
        Candidate("", 0.0)
    ]


def test_a_line_too_long_for_learned_positions_is_cut_with_a_warning(
    trained_tiny, synthetic_tokenizer, lines, caplog
):
    model = trained_tiny(pos_enc="learned", max_positions=48)
    long_line = " ".join(lines[:8])  # far more than 48 pieces
    assert len(synthetic_tokenizer.encode_src([long_line])[0]) > 48
    backend = SpyBackend(TorchBackend(model, BeamSearch(beam_size=2, max_len_a=2.0)))
    translator = Translator(synthetic_tokenizer, backend, source_name="news.txt")
    with caplog.at_level(logging.WARNING):
        out = translator.translate([lines[0], long_line, lines[1]])
    assert "news.txt line 2" in caplog.text and "48 positions" in caplog.text
    alone = translator.translate([lines[0], lines[1]])
    assert [t.text for t in out][::2] == [t.text for t in alone]
    assert out[1].text
    assert max(len(s) for b in backend.batches for s in b) == 48  # cut, EOS kept
    assert all(s[-1] == 3 for b in backend.batches for s in b)


def test_nbest_lists_are_sorted_and_start_with_the_one_best(
    trained_tiny, synthetic_tokenizer, lines
):
    model = trained_tiny()
    best = Translator(synthetic_tokenizer, TorchBackend(model, BeamSearch())).translate(lines)
    three = Translator(synthetic_tokenizer, TorchBackend(model, BeamSearch(nbest=3)))
    for one, many in zip(best, three.translate(lines), strict=True):
        assert len(many.candidates) == 3
        scores = [c.score for c in many.candidates]
        assert scores == sorted(scores, reverse=True)
        assert many.candidates[0] == one.candidates[0]
        assert len({c.text for c in many.candidates}) >= 2


def test_seeded_sampling_repeats_and_does_not_depend_on_batching(
    trained_tiny, synthetic_tokenizer, lines
):
    model = trained_tiny()

    def run(seed, max_tokens):
        backend = TorchBackend(model, Sampling(seed=seed, nbest=2, temperature=1.5))
        out = Translator(synthetic_tokenizer, backend, max_tokens=max_tokens).translate(lines)
        return [[c.text for c in t.candidates] for t in out]

    first = run(7, 4096)
    assert run(7, 4096) == first
    assert run(7, 40) == first  # other batches, same per-sentence draws
    assert run(8, 4096) != first
    greedy = Translator(synthetic_tokenizer, TorchBackend(model, GreedySearch())).translate(lines)
    assert sum(s[0] != g.text for s, g in zip(first, greedy, strict=True)) > len(lines) // 4


def test_stream_numbers_lines_across_chunks(trained_tiny, synthetic_tokenizer, lines):
    translator = Translator(synthetic_tokenizer, TorchBackend(trained_tiny(), GreedySearch()))
    streamed = list(translator.translate_stream([lines[:3], lines[3:4], lines[4:9]]))
    whole = translator.translate(lines[:9])
    assert [(t.line, t.source, t.text) for t in streamed] == [
        (t.line, t.source, t.text) for t in whole
    ]


def test_token_budget_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 3, 12, 2]
    batches = token_budget_batches(lengths, max_tokens=10)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10
    with pytest.raises(ValueError, match="max_tokens"):
        Translator(None, None, max_tokens=0)


def test_nbest_rows_format():
    t = Translation(4, "src", [Candidate("a b", -0.25), Candidate("c", -1.5)])
    assert format_translation(t, with_scores=True) == "4\t1\t-0.2500\ta b\n4\t2\t-1.5000\tc\n"
    assert format_translation(t, with_scores=False) == "a b\n"


def test_line_chunks_hand_over_what_has_arrived_without_waiting_for_a_full_buffer():
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb") as writer:
        chunks = line_chunks(reader, buffer_size=100)
        writer.write("我喜欢小狗\r\n".encode())
        writer.flush()
        got = []
        thread = threading.Thread(target=lambda: got.append(next(chunks)))
        thread.start()
        thread.join(timeout=10)
        assert got == [["我喜欢小狗"]]  # answered before the writer sends anything else
        writer.write(b"a\nb\nc")
        writer.close()
        assert [line for chunk in chunks for line in chunk] == ["a", "b", "c"]


def test_line_chunks_respect_the_buffer_and_name_bad_utf8(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(10)))
    with path.open("rb") as f:
        chunks = list(line_chunks(f, buffer_size=4, source=str(path)))
    assert [line for chunk in chunks for line in chunk] == [str(i) for i in range(10)]
    assert max(map(len, chunks)) <= 4
    path.write_bytes(b"ok\nbad \xff\n")
    with path.open("rb") as f, pytest.raises(ValueError, match=r"in\.txt:2: invalid UTF-8"):
        list(line_chunks(f, buffer_size=4, source=str(path)))
