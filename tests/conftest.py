"""Shared fixtures: where the local corpora are (tests never download), the entry points and
the real configs as the end-to-end tests compose them, the synthetic corpus and small models
trained on it."""

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def load_entry_point(name: str) -> ModuleType:
    """Import train.py / evaluate.py / ... from the repository root (they are scripts)."""
    spec = importlib.util.spec_from_file_location(f"entry_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose conf/<name>.yaml as Hydra would, with HydraConfig set for ${hydra:...}."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a real run hands main() the config without the hydra node
    return cfg


@pytest.fixture(scope="session")
def train_entry() -> ModuleType:
    return load_entry_point("train")


@pytest.fixture(scope="session")
def evaluate_entry() -> ModuleType:
    return load_entry_point("evaluate")


_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_DATA = Path(os.environ.get("TRANSFORMER_MT_TEST_DATA", _DEFAULT_DATA))


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> None:
    """Tiny test models run faster on one intra-op thread than on a contended pool."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only corpora beside the project (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"local corpora not found at {SHARED_DATA}")
    return SHARED_DATA


SYNTHETIC_TRAIN = 2000


@pytest.fixture(scope="session")
def synthetic_corpus() -> dict[str, list[tuple[str, str]]]:
    """Rule-based pairs of two made-up languages (`transformer_mt.data.synthetic`)."""
    from transformer_mt.data.synthetic import synthetic_pairs

    return {
        "train": synthetic_pairs(SYNTHETIC_TRAIN, seed=0),
        "val": synthetic_pairs(40, seed=1),
    }


@pytest.fixture(scope="session")
def synthetic_tokenizer(synthetic_corpus):
    """A joint SentencePiece vocabulary of 120 pieces trained on the synthetic train split."""
    from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig, train_sentencepiece

    lines = [side for pair in synthetic_corpus["train"] for side in pair]
    config = TokenizerConfig(vocab_size=120)
    return Tokenizer(train_sentencepiece(iter(lines), 120, 1.0, config))


def _fit(model, tokenizer, pairs, steps: int, seed: int) -> None:
    """Plain teacher-forced cross-entropy with Adam: enough for real, non-random weights."""
    import torch.nn.functional as F

    from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
    from transformer_mt.inference.backend import pad_batch

    src = tokenizer.encode_src([s for s, _ in pairs])
    tgt = tokenizer.encode_tgt([t for _, t in pairs])
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(pairs), (32,), generator=gen).tolist()
        src_ids = pad_batch([src[i] for i in rows])
        tgt_in = pad_batch([[BOS_ID, *tgt[i]] for i in rows])
        tgt_out = pad_batch([[*tgt[i], EOS_ID] for i in rows])
        logits = model(src_ids, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="session")
def trained_tiny(synthetic_corpus, synthetic_tokenizer):
    """`make(steps=300, **TransformerConfig fields)`: a small Transformer trained for `steps`
    updates on the synthetic corpus (cached per setting for the session), in eval mode."""
    from transformer_mt.model import Transformer, TransformerConfig

    cache = {}

    def make(steps: int = 300, seed: int = 0, **fields):
        key = (steps, seed, tuple(sorted(fields.items())))
        if key not in cache:
            torch.manual_seed(seed)
            size = dict(d_model=32, d_ff=64, num_heads=2, num_encoder_layers=2,
                        num_decoder_layers=2, dropout=0.0, share_embeddings=True)  # fmt: skip
            vocab = synthetic_tokenizer.src_vocab_size
            config = TransformerConfig(
                src_vocab_size=vocab, tgt_vocab_size=vocab, **{**size, **fields}
            )
            model = Transformer(config)
            _fit(model, synthetic_tokenizer, synthetic_corpus["train"], steps, seed)
            cache[key] = model
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_release(trained_tiny, synthetic_tokenizer, tmp_path_factory):
    """A release folder (`export.py format=release`) of the default `trained_tiny` model."""
    from transformer_mt.formats import LoadedModel, ModelInfo, write_release

    model = trained_tiny()
    info = ModelInfo(model.config, src_lang="xa", tgt_lang="xb", decoding={"beam_size": 5})
    loaded = LoadedModel(model, synthetic_tokenizer, info)
    return write_release(loaded, tmp_path_factory.mktemp("release") / "xa-xb", card="# xa-xb\n")


# ---- a Hugging Face Marian folder, built and trained here (no download) ----------------------


def _marian_vocab(tokenizer) -> dict[str, int]:
    """Our SentencePiece pieces in Marian's order: </s> 0, <unk> 1, the rest, <pad> last."""
    pieces = tokenizer.tgt_vocabulary()[4:]
    vocab = {"</s>": 0, "<unk>": 1, **{p: i + 2 for i, p in enumerate(pieces)}}
    vocab["<pad>"] = len(vocab)
    return vocab


def _write_marian_tokenizer(folder, tokenizer) -> None:
    proto = tokenizer.to_state()["src_model"]
    (folder / "source.spm").write_bytes(proto)
    (folder / "target.spm").write_bytes(proto)
    (folder / "vocab.json").write_text(json.dumps(_marian_vocab(tokenizer)))
    config = {"source_lang": "xa", "target_lang": "xb", "separate_vocabs": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _fit_marian(model, hf_tokenizer, pairs, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randint(len(pairs), (32,), generator=gen).tolist()
        batch = hf_tokenizer(
            [pairs[i][0] for i in rows], text_target=[pairs[i][1] for i in rows],
            padding=True, return_tensors="pt",
        )  # fmt: skip
        batch["labels"][batch["labels"] == model.config.pad_token_id] = -100
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="session")
def marian_folder(synthetic_tokenizer, synthetic_corpus, tmp_path_factory):
    """(HF folder, the MarianMTModel, its MarianTokenizer), trained briefly with transformers'
    own loss on the synthetic corpus, as `save_pretrained` writes it."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = tmp_path_factory.mktemp("opus-mt-xa-xb")
    _write_marian_tokenizer(folder, synthetic_tokenizer)
    vocab_size = len(_marian_vocab(synthetic_tokenizer))
    config = MarianConfig(
        vocab_size=vocab_size, decoder_vocab_size=vocab_size, d_model=32, encoder_layers=2,
        decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, activation_function="swish", dropout=0.0,
        max_position_embeddings=128, scale_embedding=True, pad_token_id=vocab_size - 1,
        eos_token_id=0, decoder_start_token_id=vocab_size - 1, forced_eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MarianMTModel(config)
    hf_tokenizer = MarianTokenizer.from_pretrained(folder)
    _fit_marian(model, hf_tokenizer, synthetic_corpus["train"], steps=200)
    with torch.no_grad():  # a bias worth carrying over (Marian's final_logits_bias)
        model.final_logits_bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder, model, hf_tokenizer
