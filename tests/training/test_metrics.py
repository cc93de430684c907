"""Corpus scores equal sacrebleu's own, and translations gather across processes in order."""

import math
import os
import socket

import pytest
import sacrebleu
import torch.distributed as dist
import torch.multiprocessing as mp

from transformer_mt.training.metrics import corpus_scores, gather_translations

HYPS = ["The cat sits on the mat.", "A man is riding a bike!", "two dogs"]
REFS = ["The cat sat on the mat.", "A man rides a bicycle!", "Two dogs play."]


def test_scores_equal_sacrebleu_functions() -> None:
    scores = corpus_scores(HYPS, REFS)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert scores.ter == pytest.approx(sacrebleu.corpus_ter(HYPS, [REFS]).score)
    assert "tok:13a" in scores.bleu_signature and "case:mixed" in scores.bleu_signature
    lower = corpus_scores(HYPS, REFS, lowercase=True)
    assert lower.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], lowercase=True).score)
    assert "case:lc" in lower.bleu_signature


def test_brevity_penalty_is_the_papers_formula() -> None:
    """BP = exp(1 - r/c) for a hypothesis shorter than its reference (Papineni et al. 2002)."""
    scores = corpus_scores(["a man rides"], ["a man rides a red bike ."])
    assert (scores.hyp_len, scores.ref_len) == (3, 7)
    assert scores.bleu_brevity_penalty == pytest.approx(math.exp(1 - 7 / 3))
    longer = corpus_scores(["a man rides a red bike today ."], ["a man rides a red bike ."])
    assert longer.bleu_brevity_penalty == 1.0 and longer.hyp_len == 8


def test_chinese_tokenizer_and_bad_tokenizer() -> None:
    zh = corpus_scores(["我喜欢小狗。"], ["我喜欢小狗。"], bleu_tokenize="zh")
    assert zh.bleu == pytest.approx(100.0) and "tok:zh" in zh.bleu_signature
    with pytest.raises(ValueError, match="valid: .*13a"):
        corpus_scores(HYPS, REFS, bleu_tokenize="moses")
    with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
        corpus_scores(HYPS, REFS[:2])


def test_gather_without_distributed_is_local() -> None:
    assert gather_translations([(2, "c"), (0, "a")]) == {0: "a", 2: "c"}


def _worker(rank: int, port: int, out: "mp.SimpleQueue") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    shard = [(i, f"line {i}") for i in range(rank, 5, 2)] + [(0, "line 0")]  # 0 on both ranks
    out.put((rank, gather_translations(shard)))
    dist.destroy_process_group()


def test_gather_across_two_processes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # spawn would re-import torch: slow
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get() for _ in procs)
    for p in procs:
        p.join(timeout=60)
    want = {i: f"line {i}" for i in range(5)}
    assert results == {0: want, 1: want}
