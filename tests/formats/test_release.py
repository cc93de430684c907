"""The release format: bit-identical in fp32, half size in fp16, no pickle, clear errors."""

import json
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from transformer_mt.decoding import BeamSearch
from transformer_mt.formats import LoadedModel, ModelInfo, load_model, write_release
from transformer_mt.formats.release import unique_weights
from transformer_mt.inference import TorchBackend, Translator


def translations(loaded, lines, search=None):
    backend = TorchBackend(loaded.model, search or BeamSearch(beam_size=3, nbest=2))
    out = Translator(loaded.tokenizer, backend).translate(lines)
    return [[(c.text, c.score) for c in t.candidates] for t in out]


@pytest.fixture(scope="module")
def lines(synthetic_corpus):
    return [s for s, _ in synthetic_corpus["val"]]


def test_fp32_release_is_bit_identical_to_the_model(trained_tiny, tiny_release, lines):
    model = trained_tiny()
    loaded = load_model(model_dir=tiny_release)
    original = model.state_dict()
    restored = loaded.model.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    # tied and shared matrices are one tensor again, not copies
    assert loaded.model.decoder.output.weight is loaded.model.encoder.embedding.weight
    src = torch.tensor([loaded.tokenizer.encode_src(lines[:4])[0]])
    with torch.no_grad():
        assert torch.equal(model(src, src[:, :5]), loaded.model(src, src[:, :5]))
    reference = LoadedModel(model, loaded.tokenizer, loaded.info)
    assert translations(loaded, lines) == translations(reference, lines)
    assert loaded.info.src_lang == "xa" and loaded.info.decoding == {"beam_size": 5}


def test_release_files_and_config(tiny_release, synthetic_tokenizer):
    names = {p.name for p in tiny_release.iterdir()}
    assert names == {"model.safetensors", "config.json", "src.model", "README.md"}
    config = json.loads((tiny_release / "config.json").read_text())
    assert config["format"] == "transformer-mt-release" and config["version"] == 1
    assert config["weights"]["dtype"] == "float32" and len(config["weights"]["sha256"]) == 64
    assert config["aliases"] == {
        "decoder.embedding.weight": "encoder.embedding.weight",
        "decoder.output.weight": "encoder.embedding.weight",
    }
    weights = load_file(tiny_release / "model.safetensors")
    assert "decoder.output.weight" not in weights  # each shared matrix stored once
    assert (tiny_release / "src.model").read_bytes() == synthetic_tokenizer.to_state()["src_model"]
    assert oct((tiny_release / "model.safetensors").stat().st_mode)[-3:] != "600"  # shareable


def test_fp16_release_halves_the_weights_and_translates_alike(
    trained_tiny, synthetic_tokenizer, tiny_release, tmp_path, lines
):
    model = trained_tiny()
    loaded = LoadedModel(model, synthetic_tokenizer, ModelInfo(model.config))
    half = write_release(loaded, tmp_path / "h", dtype="float16")
    full_size = (tiny_release / "model.safetensors").stat().st_size
    assert (half / "model.safetensors").stat().st_size < 0.55 * full_size
    restored = load_model(model_dir=half)
    assert restored.model.encoder.embedding.weight.dtype == torch.float32  # computed in fp32
    stored, _ = unique_weights(model)
    for name, tensor in unique_weights(restored.model)[0].items():
        assert torch.equal(tensor, stored[name].half().float())
    full = translations(load_model(model_dir=tiny_release), lines)
    same = sum(a[0][0] == b[0][0] for a, b in zip(translations(restored, lines), full, strict=True))
    assert same >= 0.9 * len(lines)


def broken_copy(release, folder):
    shutil.copytree(release, folder)
    return folder


def test_missing_files_are_named(tiny_release, tmp_path):
    for name in ("config.json", "model.safetensors", "src.model"):
        folder = broken_copy(tiny_release, tmp_path / name)
        (folder / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"missing {name}"):
            load_model(model_dir=folder)


def test_corrupted_weights_are_caught_by_the_checksum(tiny_release, tmp_path):
    folder = broken_copy(tiny_release, tmp_path / "b")
    raw = bytearray((folder / "model.safetensors").read_bytes())
    raw[-2000:-1000] = bytes(1000)
    (folder / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 differs"):
        load_model(model_dir=folder)


def rewrite_weights(folder, change):
    """Change the weights and drop config.json's sha256, as a consistent forgery would."""
    weights = load_file(folder / "model.safetensors")
    change(weights)
    save_file(weights, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["weights"]["sha256"] = None
    (folder / "config.json").write_text(json.dumps(config))


def test_weights_that_do_not_fit_the_config_name_the_tensor(tiny_release, tmp_path):
    folder = broken_copy(tiny_release, tmp_path / "shape")
    name = "encoder.layers.0.ffn.w_1.weight"
    assert name in load_file(folder / "model.safetensors")
    rewrite_weights(folder, lambda w: w.update({name: torch.zeros(3, 3)}))
    with pytest.raises(ValueError, match=rf"{name} has shape \(3, 3\), .* needs \(64, 32\)"):
        load_model(model_dir=folder)
    folder = broken_copy(tiny_release, tmp_path / "nan")
    key = "encoder.embedding.weight"
    rewrite_weights(folder, lambda w: w[key].__setitem__((5, 0), float("nan")))
    with pytest.raises(ValueError, match=f"{key} holds NaN"):
        load_model(model_dir=folder)
    folder = broken_copy(tiny_release, tmp_path / "extra")
    rewrite_weights(folder, lambda w: w.pop("decoder.layers.1.norm3.bias"))
    with pytest.raises(ValueError, match=r"missing \['decoder\.layers\.1\.norm3\.bias'\]"):
        load_model(model_dir=folder)


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(tiny_release, tmp_path):
    folder = broken_copy(tiny_release, tmp_path / "p")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "model.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    config = json.loads((folder / "config.json").read_text())
    config["weights"]["sha256"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(model_dir=folder)
    assert not marker.exists()


def test_wrong_kind_of_path_says_what_it_found(tiny_release, tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="Lightning checkpoint.*use ckpt_path="):
        load_model(model_dir=ckpt)
    with pytest.raises(ValueError, match="is a release folder: use model_dir="):
        load_model(ckpt_path=tiny_release)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert"}')
    (hf / "model.safetensors").write_bytes(b"")
    (hf / "src.model").write_bytes(b"")
    with pytest.raises(ValueError, match="format None, expected 'transformer-mt-release'"):
        load_model(model_dir=hf)
    (hf / "config.json").write_text('{"model_type": "marian"}')  # read as a Marian folder
    with pytest.raises(FileNotFoundError, match="missing source.spm"):
        load_model(model_dir=hf)
    with pytest.raises(ValueError, match="exactly one of ckpt_path"):
        load_model()


def test_export_refuses_a_non_empty_folder(tiny_release, trained_tiny, synthetic_tokenizer):
    loaded = LoadedModel(trained_tiny(), synthetic_tokenizer, ModelInfo(trained_tiny().config))
    with pytest.raises(ValueError, match="exists and is not empty"):
        write_release(loaded, tiny_release)
    with pytest.raises(ValueError, match="dtype='int4'"):
        write_release(loaded, tiny_release.parent / "other", dtype="int4")
    assert not (tiny_release.parent / "other").exists()
    assert not [p for p in tiny_release.parent.iterdir() if p.name.startswith(".")]
