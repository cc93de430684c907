"""Hugging Face Marian folders: imported models compute what MarianMTModel computes (logits,
greedy and beam outputs of `generate`), and exported ones load back into transformers.

The Marian model (fixture `marian_folder`) is built from a config (no download), with a
SentencePiece model trained on the synthetic corpus and a vocab.json in Marian's id order
(eos 0, unk 1, ..., pad last), then trained for a few hundred updates with transformers' own
loss so its outputs end.
"""

import json
import logging

import pytest
import torch
from transformers import MarianMTModel, MarianTokenizer

from transformer_mt.constants import BOS_ID, EOS_ID
from transformer_mt.decoding import BeamSearch, GreedySearch
from transformer_mt.formats import load_model
from transformer_mt.formats.marian import export_marian, import_marian, interleave_permutation
from transformer_mt.inference import TorchBackend, Translator
from transformer_mt.model.positional import sinusoid_table

logging.getLogger("transformers").setLevel(logging.ERROR)
MAX_NEW = 40


@pytest.fixture(scope="module")
def marian(marian_folder):
    return marian_folder


@pytest.fixture(scope="module")
def imported(marian):
    return import_marian(marian[0])


@pytest.fixture(scope="module")
def lines(synthetic_corpus):
    return [s for s, _ in synthetic_corpus["val"]]


def our_id_of_marian(imported, hf_tokenizer) -> dict[int, int]:
    """Marian id -> our id, by piece (Marian's pad is our <pad>)."""
    ours = {p: i for i, p in enumerate(imported.tokenizer.tgt_vocabulary())}
    return {i: ours[p] for p, i in hf_tokenizer.get_vocab().items()}


def test_marian_sinusoids_are_ours_permuted(marian):
    """The coordinate map the import relies on, against Marian's own table."""
    hf_table = marian[1].model.encoder.embed_positions.weight.detach()  # (P, d)
    ours = sinusoid_table(hf_table.size(0), hf_table.size(1))
    torch.testing.assert_close(ours, hf_table[:, interleave_permutation(hf_table.size(1))])


def test_tokenizer_gives_marians_ids(imported, marian, lines):
    hf_tokenizer = marian[2]
    to_ours = our_id_of_marian(imported, hf_tokenizer)
    texts = [*lines[:10], "A ☃ sees the dog.", ""]
    for text in texts:
        hf_ids = hf_tokenizer(text)["input_ids"]
        assert imported.tokenizer.encode_src([text])[0] == [to_ours[i] for i in hf_ids], text
    ids = imported.tokenizer.encode_tgt(lines[:5])
    hf_targets = hf_tokenizer(text_target=lines[:5])["input_ids"]
    assert [[to_ours[i] for i in hf[:-1]] for hf in hf_targets] == ids  # its EOS dropped
    decoded = imported.tokenizer.decode_tgt(ids)
    assert decoded == [hf_tokenizer.decode(hf, skip_special_tokens=True) for hf in hf_targets]
    assert decoded == lines[:5]


def test_logits_equal_marians_on_a_padded_batch(imported, marian, lines):
    _, model, hf_tokenizer = marian
    to_ours = our_id_of_marian(imported, hf_tokenizer)
    batch = hf_tokenizer(lines[:6], text_target=lines[6:12], padding=True, return_tensors="pt")
    start = model.config.decoder_start_token_id
    labels = batch["labels"]
    decoder_in = torch.cat([torch.full((6, 1), start), labels[:, :-1]], dim=1)
    with torch.no_grad():
        hf = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   decoder_input_ids=decoder_in).logits  # fmt: skip
    src = batch["input_ids"].apply_(lambda i: to_ours[i])
    tgt = decoder_in.apply_(lambda i: to_ours[i])
    tgt[:, 0] = BOS_ID
    with torch.no_grad():
        ours = imported.model(src, tgt)
    columns = torch.tensor([to_ours[i] for i in range(hf.size(-1))])
    keep = batch["attention_mask"].new_ones(labels.shape).bool() & labels.ne(start)
    keep[:, 0] = True  # every row's first prediction
    torch.testing.assert_close(ours[..., columns][keep], hf[keep], atol=1e-5, rtol=1e-5)
    assert ours.size(-1) == hf.size(-1) + 1  # our <s> is one more row


def generate(model, hf_tokenizer, lines, beams: int) -> list[list[int]]:
    batch = hf_tokenizer(lines, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **batch, num_beams=beams, do_sample=False, max_new_tokens=MAX_NEW, min_new_tokens=1,
            early_stopping=True, length_penalty=1.0, bad_words_ids=[[model.config.pad_token_id]],
        )  # fmt: skip
    rows = []
    for row in out[:, 1:].tolist():  # without the decoder start
        rows.append(row[: row.index(0)] if 0 in row else row)
    return rows


def normalized(model, source: list[int], tokens: list[int]) -> float:
    """Our model's length-normalized log-probability of `tokens` + EOS (len_penalty 1)."""
    with torch.no_grad():
        lprobs = model(torch.tensor([source]), torch.tensor([[BOS_ID, *tokens]])).log_softmax(-1)
    return sum(lprobs[0, i, t].item() for i, t in enumerate([*tokens, EOS_ID])) / (len(tokens) + 1)


def assert_ours_at_least_as_good(model, sources, ours, theirs, label: str) -> None:
    """Identical outputs on nearly all sentences; where they differ, ours scores no worse (a
    search that found a better hypothesis, or a tie), by the model's own log-probabilities."""
    same = [o == t for o, t in zip(ours, theirs, strict=True)]
    print(f"{label}: {sum(same)}/{len(same)} identical")
    assert sum(same) >= 0.9 * len(same)
    for source, o, t, equal in zip(sources, ours, theirs, same, strict=True):
        if not equal:
            mine, hers = normalized(model, source, o), normalized(model, source, t)
            print(f"  differs: ours {mine:.4f}, transformers {hers:.4f}")
            assert mine >= hers - 1e-4


@pytest.mark.parametrize("beams", [1, 5])
def test_greedy_and_beam_equal_marians_generate(imported, marian, lines, beams):
    _, model, hf_tokenizer = marian
    to_ours = our_id_of_marian(imported, hf_tokenizer)
    search = GreedySearch if beams == 1 else BeamSearch
    options = dict(max_len_a=0, max_len_b=MAX_NEW)
    backend = TorchBackend(
        imported.model, search(**options, **({"beam_size": 5} if beams > 1 else {}))
    )
    sources = imported.tokenizer.encode_src(lines)
    ours = [n[0].tokens for n in backend.search(sources, list(range(len(lines))))]
    theirs = [[to_ours[i] for i in row] for row in generate(model, hf_tokenizer, lines, beams)]
    label = f"beam {beams}, imported model vs MarianMTModel.generate"
    assert_ours_at_least_as_good(imported.model, sources, ours, theirs, label)


def test_round_trip_import_export_gives_the_same_hf_model(imported, marian, lines, tmp_path):
    folder, model, hf_tokenizer = marian
    out = export_marian(imported, tmp_path / "back")
    again = MarianMTModel.from_pretrained(out).eval()
    again_tokenizer = MarianTokenizer.from_pretrained(out)
    assert again_tokenizer.get_vocab() == hf_tokenizer.get_vocab()
    batch = hf_tokenizer(lines[:8], padding=True, return_tensors="pt")
    decoder_in = torch.full((8, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        a = model(**batch, decoder_input_ids=decoder_in).logits
        b = again(**batch, decoder_input_ids=decoder_in).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert generate(again, again_tokenizer, lines, 5) == generate(model, hf_tokenizer, lines, 5)


def test_our_own_model_exports_to_marian(trained_tiny, synthetic_tokenizer, lines, tmp_path):
    """A model trained here (post-norm, sinusoidal) handed to transformers: same beam outputs."""
    from transformer_mt.formats import LoadedModel, ModelInfo

    model = trained_tiny()
    loaded = LoadedModel(model, synthetic_tokenizer, ModelInfo(model.config, "xa", "xb"))
    out = export_marian(loaded, tmp_path / "hf")
    hf, hf_tokenizer = (
        MarianMTModel.from_pretrained(out).eval(),
        MarianTokenizer.from_pretrained(out),
    )
    assert hf.config.decoder_start_token_id != hf.config.pad_token_id  # our <s> is its own row
    search = BeamSearch(beam_size=5, max_len_a=0, max_len_b=MAX_NEW)
    translator = Translator(synthetic_tokenizer, TorchBackend(model, search))
    ours = [t.text for t in translator.translate(lines)]
    batch = hf_tokenizer(lines, padding=True, return_tensors="pt")
    with torch.no_grad():
        out_ids = hf.generate(**batch, num_beams=5, max_new_tokens=MAX_NEW, min_new_tokens=1,
                              early_stopping=True)  # fmt: skip
    theirs = hf_tokenizer.batch_decode(out_ids, skip_special_tokens=True)
    theirs = [synthetic_tokenizer.encode_tgt([t])[0] for t in theirs]
    ours = [synthetic_tokenizer.encode_tgt([t])[0] for t in ours]
    sources = synthetic_tokenizer.encode_src(lines)
    assert_ours_at_least_as_good(model, sources, ours, theirs, "our model through transformers")


def test_translate_py_path_reads_a_marian_folder_directly(marian, lines):
    loaded = load_model(model_dir=marian[0])
    assert loaded.info.src_lang == "xa" and loaded.info.config.output_bias
    out = Translator(loaded.tokenizer, TorchBackend(loaded.model, GreedySearch())).translate(
        lines[:3]
    )
    assert all(t.text for t in out)


def test_pytorch_model_bin_is_read_weights_only(marian, imported, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(marian[0], folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    again = import_marian(folder)
    for name, tensor in imported.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name])


def edited(marian, tmp_path, **changes):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(marian[0], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scale_embedding": False}, "scale_embedding=false"),
        ({"decoder_ffn_dim": 128}, "encoder_ffn_dim=64 != decoder_ffn_dim=128"),
        ({"activation_function": "tanh"}, "activation_function='tanh'"),
        ({"decoder_vocab_size": 7}, "decoder_vocab_size"),
    ],
)
def test_what_we_cannot_express_is_refused_by_name(marian, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        import_marian(edited(marian, tmp_path, **changes))


def test_missing_files_and_inexpressible_exports(
    marian, trained_tiny, synthetic_tokenizer, tmp_path
):
    from transformer_mt.formats import LoadedModel, ModelInfo

    folder = edited(marian, tmp_path)
    (folder / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing vocab.json"):
        import_marian(folder)
    for fields, message in (({"norm_first": True}, "norm_first=true"),
                            ({"pos_enc": "rope"}, "pos_enc='rope'")):  # fmt: skip
        model = trained_tiny(**fields)
        loaded = LoadedModel(model, synthetic_tokenizer, ModelInfo(model.config))
        with pytest.raises(ValueError, match=message):
            export_marian(loaded, tmp_path / "x")
