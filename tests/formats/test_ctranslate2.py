"""CTranslate2 export: the same model run by CTranslate2 decodes as ours, scores as ours.

References are independent of the code under test: `TorchBackend` (our searches on our model)
and our model's own teacher-forced log-softmax, which arbitrates where beams differ.
"""

import dataclasses
import json
import shutil

import ctranslate2
import pytest
import torch

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig, train_sentencepiece
from transformer_mt.decoding import BeamSearch, GreedySearch, Sampling
from transformer_mt.decoding.constraints import max_output_lengths
from transformer_mt.decoding.hypothesis import normalized_score
from transformer_mt.formats.ctranslate2 import (
    CT2_POS_ENC,
    QUANTIZATIONS,
    check_ctranslate2_support,
    export_ctranslate2,
    is_ctranslate2_dir,
    read_ctranslate2_dir,
)
from transformer_mt.formats.info import ModelInfo
from transformer_mt.inference.backend import TorchBackend, pad_batch
from transformer_mt.inference.ctranslate2 import CTranslate2Backend
from transformer_mt.model import Transformer, TransformerConfig

SETTINGS = {
    "sinusoidal-post": {},  # the default trained_tiny: post-norm, shared and tied, relu
    # what a Marian / OPUS-MT import looks like: post-norm, swish, a bias on the logits
    "marian-like": {"activation": "swish", "output_bias": True},
    "sinusoidal-pre": {"norm_first": True},
    "learned-untied-gelu": {
        "pos_enc": "learned", "norm_first": True, "share_embeddings": False,
        "tie_output": False, "activation": "gelu",
    },
    "relative": {"pos_enc": "relative", "norm_first": True},
    "none": {"pos_enc": "none", "norm_first": True},
    "rope": {"pos_enc": "rope", "norm_first": True},
}  # fmt: skip


@pytest.fixture(scope="module")
def exported(trained_tiny, synthetic_tokenizer, tmp_path_factory):
    """`get(setting, quantization)` -> (our model, its CTranslate2 folder), made once."""
    cache = {}

    def get(setting: str, quantization: str = "float32"):
        if (setting, quantization) not in cache:
            model = trained_tiny(**SETTINGS[setting])
            out = tmp_path_factory.mktemp("ct2") / f"{setting}-{quantization}"
            info = ModelInfo(model.config, src_lang="xa", tgt_lang="xb")
            folder = export_ctranslate2(model, synthetic_tokenizer, info, out, quantization)
            cache[setting, quantization] = model, folder
        return cache[setting, quantization]

    return get


@pytest.fixture(scope="module")
def sources(synthetic_corpus, synthetic_tokenizer):
    return synthetic_tokenizer.encode_src([s for s, _ in synthetic_corpus["val"]])


def both(model, folder, search, sources, **options):
    """(ours, CTranslate2's) n-best lists for `sources` (exact scores and limits unless told
    otherwise)."""
    options.setdefault("exact_scores", True)
    options.setdefault("exact_limits", True)
    rows = list(range(len(sources)))
    ours = TorchBackend(model, search).search(sources, rows)
    backend = CTranslate2Backend(folder, search, intra_threads=1, **options)
    return ours, backend.search(sources, rows)


def teacher_forced(model, source, tokens) -> list[float]:
    """Our model's log-probs of `tokens` then EOS given `source` (the independent arbiter)."""
    with torch.no_grad():
        logits = model(torch.tensor([source]), torch.tensor([[BOS_ID, *tokens]]))
    lprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (T + 1, V)
    return lprobs[torch.arange(len(tokens) + 1), torch.tensor([*tokens, EOS_ID])].tolist()


def check_scores(model, source, hyp, len_penalty: float) -> None:
    """`hyp`'s log-probs and score are what our model gives its tokens."""
    expected = teacher_forced(model, source, hyp.tokens)
    assert hyp.positional_scores == pytest.approx(expected, abs=1e-4)
    assert hyp.log_prob == pytest.approx(sum(expected), abs=1e-4)
    assert hyp.score == pytest.approx(
        normalized_score(hyp.log_prob, len(hyp.tokens) + 1, len_penalty), abs=1e-9
    )


@pytest.mark.parametrize("setting", SETTINGS)
def test_logits_agree_with_our_teacher_forced_pass(setting, exported, synthetic_corpus, sources):
    model, folder = exported(setting)
    tokenizer = read_ctranslate2_dir(folder)[1]
    targets = tokenizer.encode_tgt([t for _, t in synthetic_corpus["val"]])
    translator = ctranslate2.Translator(str(folder), intra_threads=1)
    scored = translator.score_batch(
        [tokenizer.tgt_pieces(s) for s in sources],
        [tokenizer.tgt_pieces(t) for t in targets],
        max_input_length=0,
    )
    worst = max(
        max(abs(a - b) for a, b in zip(r.log_probs, teacher_forced(model, s, t), strict=True))
        for r, s, t in zip(scored, sources, targets, strict=True)
    )
    print(f"{setting}: largest log-prob difference {worst:.2e}")
    assert worst < 1e-4


@pytest.mark.parametrize("setting", SETTINGS)
def test_greedy_equals_ours_on_every_sentence(setting, exported, sources):
    model, folder = exported(setting)
    free, short = GreedySearch(), GreedySearch(max_len_a=0, max_len_b=5)
    long = GreedySearch(min_len=20)
    lengths = {}
    for search in (free, short, long):
        ours, theirs = both(model, folder, search, sources)
        assert [t[0].tokens for t in theirs] == [o[0].tokens for o in ours], search
        for source, (hyp,) in zip(sources, theirs, strict=True):
            check_scores(model, source, hyp, len_penalty=1.0)
        lengths[search] = [len(t[0].tokens) for t in theirs]
    assert all(n == 4 for n in lengths[short])  # every sentence stopped at its limit of 5
    assert min(lengths[free]) < 20 <= min(lengths[long])  # min_len held some back


@pytest.mark.parametrize("setting", SETTINGS)
def test_beam_equals_ours_on_nearly_all(setting, exported, sources):
    model, folder = exported(setting)
    for search in (BeamSearch(beam_size=5), BeamSearch(beam_size=5, max_len_a=0, max_len_b=8)):
        ours, theirs = both(model, folder, search, sources)
        same = [o[0].tokens == t[0].tokens for o, t in zip(ours, theirs, strict=True)]
        print(f"{setting} {search}: beam agreement {sum(same)}/{len(same)}")
        assert sum(same) >= 0.9 * len(same)
        for source, o, t, agree in zip(sources, ours, theirs, same, strict=True):
            check_scores(model, source, t[0], search.len_penalty)
            if not agree:  # a tie within float error, by our model's own log-probs
                mine = teacher_forced(model, source, o[0].tokens)
                assert t[0].score == pytest.approx(
                    normalized_score(sum(mine), len(mine), search.len_penalty), abs=1e-4
                )


def test_nbest_lists_are_ranked_and_match_ours(exported, sources):
    model, folder = exported("sinusoidal-pre")
    search = BeamSearch(beam_size=5, len_penalty=0.6, nbest=3)
    ours, theirs = both(model, folder, search, sources)
    assert all(len(t) == 3 for t in theirs)
    assert all(t[0].score >= t[1].score >= t[2].score for t in theirs)
    same = [
        {tuple(h.tokens) for h in o} == {tuple(h.tokens) for h in t}
        for o, t in zip(ours, theirs, strict=True)
    ]
    print(f"n-best sets equal on {sum(same)}/{len(same)}")
    assert sum(same) >= 0.9 * len(same)


def test_ctranslate2_length_options_mean_what_the_backend_assumes(exported, sources):
    """max_decoding_length counts an EOS produced but forces none; min_decoding_length counts
    the tokens before the EOS (as our min_len). Guards the backend against a changed version."""
    _, folder = exported("sinusoidal-pre")
    translator = ctranslate2.Translator(str(folder), intra_threads=1)
    source = [read_ctranslate2_dir(folder)[1].tgt_pieces(sources[0])]

    def output(**options):
        (result,) = translator.translate_batch(
            source, beam_size=1, max_input_length=0, return_end_token=True, **options
        )
        return result.hypotheses[0]

    free = output(max_decoding_length=200)
    n = len(free) - 1  # tokens before the EOS
    assert free[-1] == "</s>"
    assert output(max_decoding_length=n + 1) == free  # n tokens and the EOS fit in n + 1
    stopped = output(max_decoding_length=n)
    assert stopped == free[:n]  # n tokens, no EOS forced
    assert output(max_decoding_length=200, min_decoding_length=n) == free
    assert len(output(max_decoding_length=200, min_decoding_length=n + 1)) > n + 1


def test_seeded_sampling_depends_only_on_seed_row_and_draw(exported, sources):
    _, folder = exported("sinusoidal-pre")
    search = Sampling(temperature=1.5, top_k=20, top_p=0.95, nbest=2, seed=7)
    rows = list(range(100, 100 + len(sources)))

    def samples(backend, order):
        found = backend.search([sources[i] for i in order], [rows[i] for i in order])
        return {
            i: [(h.tokens, h.score) for h in hyps] for i, hyps in zip(order, found, strict=True)
        }

    first = CTranslate2Backend(folder, search, intra_threads=1)
    order = list(range(len(sources)))
    reference = samples(first, order)
    again = CTranslate2Backend(folder, search, intra_threads=1)
    assert samples(again, order) == reference
    half = len(order) // 2
    shuffled = samples(first, order[::-1][:half]) | samples(again, order[::-1][half:])
    assert shuffled == reference  # another order and split, the same per-sentence samples
    other = CTranslate2Backend(folder, dataclasses.replace(search, seed=8), intra_threads=1)
    assert samples(other, order) != reference
    assert all(len(h) == 2 and h[0][1] >= h[1][1] for h in reference.values())


def test_sampling_filters_map_onto_ctranslate2(exported, sources):
    """top_k=0 samples the whole distribution, top_k=k at most k tokens, top_k > V all of them;
    a tiny top_p keeps only the most probable token; PAD and BOS never come."""
    _, folder = exported("sinusoidal-pre")
    firsts = {}
    for top_k in (0, 5):
        search = Sampling(temperature=50.0, top_k=top_k, max_len_a=0, max_len_b=2, nbest=400)
        (hyps,) = CTranslate2Backend(folder, search, intra_threads=1).search(sources[:1], [0])
        firsts[top_k] = {h.tokens[0] for h in hyps}
        assert all(len(h.tokens) == 1 for h in hyps)  # limit 2: one token, then our EOS
    assert len(firsts[0]) > 100 and len(firsts[5]) <= 5  # 117 tokens allowed at step 0
    assert not firsts[0] & {PAD_ID, BOS_ID, EOS_ID}  # EOS: min_len=1
    rows = list(range(len(sources)))
    greedy = CTranslate2Backend(folder, GreedySearch(), intra_threads=1).search(sources, rows)
    for search in (Sampling(top_p=1e-6), Sampling(top_k=1000, top_p=1e-6, seed=1)):
        found = CTranslate2Backend(folder, search, intra_threads=1).search(sources, rows)
        assert [f[0].tokens for f in found] == [g[0].tokens for g in greedy]  # top-1 remains


def test_tiny_limits(exported, sources):
    """Limits of 1 (only the EOS: CTranslate2 is not even called) and 2 (one step)."""
    model, folder = exported("sinusoidal-pre")
    searches = (
        GreedySearch(max_len_a=0, max_len_b=1),
        GreedySearch(max_len_a=0, max_len_b=2),
        BeamSearch(beam_size=3, max_len_a=0, max_len_b=1),
        BeamSearch(beam_size=3, max_len_a=0, max_len_b=2, nbest=3),
    )
    for search in searches:
        ours, theirs = both(model, folder, search, sources[:8])
        assert [[h.tokens for h in t] for t in theirs] == [[h.tokens for h in o] for o in ours]
        for source, t in zip(sources[:8], theirs, strict=True):
            check_scores(model, source, t[0], getattr(search, "len_penalty", 1.0))


def test_fast_scores_are_ctranslate2s_own(exported, sources):
    """exact_scores=False: the same outputs, CTranslate2's renormalized log-probs (close to
    ours), except stopped outputs, rescored for the EOS they lack."""
    model, folder = exported("sinusoidal-pre")
    for search in (GreedySearch(), BeamSearch(beam_size=5, len_penalty=0.6, nbest=2)):
        _, exact = both(model, folder, search, sources)
        _, found = both(model, folder, search, sources, exact_scores=False)
        assert [[h.tokens for h in f] for f in found] == [[h.tokens for h in e] for e in exact]
        for f, e in zip(found, exact, strict=True):
            assert f[0].log_prob == pytest.approx(e[0].log_prob, abs=1e-2)
            assert f[0].log_prob >= e[0].log_prob - 1e-4  # renormalized: never below ours
    stopped = GreedySearch(max_len_a=0, max_len_b=5)  # every sentence stops at its limit
    _, theirs = both(model, folder, stopped, sources, exact_scores=False)
    for source, t in zip(sources, theirs, strict=True):
        check_scores(model, source, t[0], 1.0)


def test_fast_limits_differ_only_where_a_sentence_reaches_its_limit(exported, sources):
    """exact_limits=False: one search with the batch's largest limit; a sentence whose search
    ends before its own limit finds what the exact search finds, the others are cut to it."""
    model, folder = exported("sinusoidal-pre")
    search = BeamSearch(beam_size=5, max_len_a=1.3, max_len_b=0)
    limits = max_output_lengths(pad_batch(sources), 1.3, 0).tolist()
    _, exact = both(model, folder, search, sources)
    _, fast = both(model, folder, search, sources, exact_limits=False)
    reached = [len(e[0].tokens) >= limit - 2 for e, limit in zip(exact, limits, strict=True)]
    assert 0 < sum(reached) < len(sources)  # both kinds of sentence are there
    assert all(len(f[0].tokens) <= limit - 1 for f, limit in zip(fast, limits, strict=True))
    free = [e[0].tokens == f[0].tokens for e, f, hit in zip(exact, fast, reached, strict=True)
            if not hit]  # fmt: skip
    print(f"fast limits: {sum(free)}/{len(free)} of the sentences ending in time agree")
    assert sum(free) >= 0.9 * len(free)


def test_int8_export_translates_mostly_as_float32(exported, sources):
    _, folder = exported("sinusoidal-pre")
    _, int8 = exported("sinusoidal-pre", "int8")
    size = (folder / "model.bin").stat().st_size  # a third of it the float32 position table
    assert (int8 / "model.bin").stat().st_size < 0.7 * size
    rows = list(range(len(sources)))
    full = CTranslate2Backend(folder, GreedySearch(), intra_threads=1).search(sources, rows)
    quantized = CTranslate2Backend(int8, GreedySearch(), intra_threads=1).search(sources, rows)
    same = sum(a[0].tokens == b[0].tokens for a, b in zip(full, quantized, strict=True))
    print(f"int8 greedy equal to float32 on {same}/{len(sources)}")
    assert same >= 0.5 * len(sources)


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_every_quantization_exports_and_translates(exported, sources, quantization):
    """On a CPU the 16-bit kinds compute in float32 (CTranslate2 converts them on load)."""
    _, folder = exported("sinusoidal-pre", quantization)
    meta = json.loads((folder / "transformer_mt.json").read_text())
    assert meta["quantization"] == quantization
    search = GreedySearch(max_len_a=0, max_len_b=12)
    found = CTranslate2Backend(folder, search, intra_threads=1).search(sources[:8], range(8))
    assert all(1 <= len(f[0].tokens) <= 11 and f[0].log_prob < 0 for f in found)


def test_folder_files_and_round_trip(exported, synthetic_tokenizer):
    model, folder = exported("sinusoidal-post")
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "model.bin", "config.json", "shared_vocabulary.json", "src.model", "transformer_mt.json"
    }  # fmt: skip
    meta = json.loads((folder / "transformer_mt.json").read_text())
    assert (meta["format"], meta["version"], meta["quantization"]) == (
        "transformer-mt-ctranslate2", 1, "float32"
    )  # fmt: skip
    assert meta["transformer"] == dataclasses.asdict(model.config)
    ct2_config = json.loads((folder / "config.json").read_text())
    assert (ct2_config["decoder_start_token"], ct2_config["eos_token"]) == ("<s>", "</s>")
    assert not ct2_config["add_source_eos"]  # our sources carry their </s>
    vocabulary = json.loads((folder / "shared_vocabulary.json").read_text())
    assert vocabulary == synthetic_tokenizer.tgt_pieces(range(synthetic_tokenizer.tgt_vocab_size))
    info, tokenizer = read_ctranslate2_dir(folder)
    assert info == ModelInfo(model.config, src_lang="xa", tgt_lang="xb")
    assert tokenizer.fingerprint() == synthetic_tokenizer.fingerprint()
    assert is_ctranslate2_dir(folder) and not is_ctranslate2_dir(folder.parent)
    assert oct(folder.stat().st_mode)[-3:] != "700"  # shareable, not mkdtemp's private mode
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary left


def test_separate_vocabularies(synthetic_corpus, tmp_path):
    """Non-joint SentencePiece models: source ids map to source pieces, target to target."""
    train = synthetic_corpus["train"]
    protos = [
        train_sentencepiece(iter([pair[side] for pair in train]), size, 1.0, TokenizerConfig())
        for side, size in ((0, 80), (1, 60))
    ]
    tokenizer = Tokenizer(*protos)
    torch.manual_seed(0)
    config = TransformerConfig(
        src_vocab_size=80, tgt_vocab_size=60, d_model=32, d_ff=64, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, dropout=0.0, norm_first=True,
    )  # fmt: skip
    model = Transformer(config).eval()
    folder = export_ctranslate2(model, tokenizer, ModelInfo(config), tmp_path / "m")
    assert {"source_vocabulary.json", "target_vocabulary.json", "tgt.model"} <= {
        p.name for p in folder.iterdir()
    }
    sources = tokenizer.encode_src([s for s, _ in synthetic_corpus["val"][:10]])
    for search in (GreedySearch(max_len_a=0, max_len_b=12), BeamSearch(beam_size=3)):
        ours, theirs = both(model, folder, search, sources)
        assert [t[0].tokens for t in theirs] == [o[0].tokens for o in ours]


def test_max_source_len_is_the_exported_table(exported):
    for setting, rows in (("sinusoidal-pre", 1024), ("relative", None), ("rope", 1024)):
        _, folder = exported(setting)
        backend = CTranslate2Backend(folder, GreedySearch())
        assert backend.max_source_len == rows and backend.nbest == 1
        assert backend.info.config.pos_enc == SETTINGS[setting].get("pos_enc", "sinusoidal")


def test_output_limit_is_capped_at_the_position_table(synthetic_tokenizer, sources, tmp_path):
    """A learned table of 16 rows: outputs stop at 16 tokens (EOS included), as ours do, where
    CTranslate2 would raise past the table."""
    torch.manual_seed(0)
    config = TransformerConfig(
        src_vocab_size=120, tgt_vocab_size=120, d_model=16, d_ff=32, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, pos_enc="learned", max_positions=16,
    )  # fmt: skip
    model = Transformer(config).eval()
    folder = export_ctranslate2(model, synthetic_tokenizer, ModelInfo(config), tmp_path / "m")
    short = [s[:16] for s in sources[:6]]  # what the translator cuts sources to
    ours, theirs = both(model, folder, GreedySearch(max_len_a=0, max_len_b=100), short)
    assert [t[0].tokens for t in theirs] == [o[0].tokens for o in ours]
    assert max(len(t[0].tokens) for t in theirs) == 15


def test_unsupported_kinds_are_refused_with_the_reason(synthetic_tokenizer, tmp_path):
    config = TransformerConfig(src_vocab_size=120, tgt_vocab_size=120, pos_enc="alibi")
    with pytest.raises(ValueError, match="pos_enc='alibi'.*causal.*sinusoidal") as err:
        check_ctranslate2_support(config)
    assert all(kind in str(err.value) for kind in CT2_POS_ENC)
    small = config.replace(d_model=16, d_ff=16, num_heads=2, num_encoder_layers=1,
                           num_decoder_layers=1)  # fmt: skip
    with pytest.raises(ValueError, match="alibi"):
        export_ctranslate2(
            Transformer(small), synthetic_tokenizer, ModelInfo(small), tmp_path / "a"
        )
    assert not (tmp_path / "a").exists()


def test_unknown_quantization_lists_the_choices(exported, synthetic_tokenizer, tmp_path):
    model, _ = exported("sinusoidal-post")
    with pytest.raises(ValueError, match="quantization='int4'.*int8_bfloat16"):
        export_ctranslate2(model, synthetic_tokenizer, ModelInfo(model.config), tmp_path, "int4")


def test_existing_folder_needs_force(exported, synthetic_tokenizer, tmp_path):
    model, _ = exported("sinusoidal-post")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    info = ModelInfo(model.config)
    with pytest.raises(ValueError, match="not empty.*force"):
        export_ctranslate2(model, synthetic_tokenizer, info, out)
    export_ctranslate2(model, synthetic_tokenizer, info, out, force=True)
    assert is_ctranslate2_dir(out) and not (out / "notes.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    "missing", ["transformer_mt.json", "model.bin", "src.model"], ids=lambda name: name
)
def test_incomplete_folder_names_the_missing_file(exported, tmp_path, missing):
    _, folder = exported("sinusoidal-post")
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / missing).unlink()
    with pytest.raises((ValueError, FileNotFoundError), match=f"model_dir={broken}.*{missing}"):
        read_ctranslate2_dir(broken)


def test_other_kinds_of_model_are_named(tiny_release, tmp_path):
    with pytest.raises(ValueError, match="this is a release folder; use backend=torch"):
        CTranslate2Backend(tiny_release, GreedySearch())
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="Lightning checkpoint"):
        read_ctranslate2_dir(ckpt)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "marian"}))
    (hf / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="Hugging Face"):
        read_ctranslate2_dir(hf)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_ctranslate2_dir(tmp_path / "nowhere")
