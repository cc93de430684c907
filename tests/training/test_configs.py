"""Every config group option composes and passes the start-up check; mistakes fail at start
with the valid choices named."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from transformer_mt.utils.config_check import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GROUP_OPTIONS = [
    (group, option)
    for group in (
        "model",
        "pos_enc",
        "optimizer",
        "scheduler",
        "decoding",
        "trainer",
        "logger",
        "callbacks",
        "data",
        "debug",
        "experiment",
    )  # fmt: skip
    for option in _options(group)
]


def test_every_group_has_its_options() -> None:
    assert _options("model") == ["base", "big", "small", "tiny"]
    assert _options("pos_enc") == ["alibi", "learned", "none", "relative", "rope", "sinusoidal"]
    assert {"noam", "inverse_sqrt", "cosine"} <= set(_options("scheduler"))
    assert {"default", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"csv", "wandb", "tensorboard"} <= set(_options("logger"))
    assert {"greedy", "beam"} <= set(_options("decoding"))
    assert {"fast_dev_run", "overfit"} <= set(_options("debug"))


# options with mandatory (???) values, given as a user must
REQUIRED = {
    ("data", "custom"): [f"data.corpus.{s}_{side}={s}.{side}" for s in ("train", "val")
                         for side in ("src", "tgt")],
}  # fmt: skip


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_option_composes_and_passes_the_check(group, option, compose_cfg, train_entry) -> None:
    cfg = compose_cfg("train", f"{group}={option}", *REQUIRED.get((group, option), []))
    train_entry.check(cfg)


def test_unset_mandatory_values_are_all_named_at_start(compose_cfg, train_entry) -> None:
    with pytest.raises(
        ConfigError,
        match=r"(?s)data\.corpus\.train_src: required \(\?\?\?\), "
        r"e\.g\. data\.corpus\.train_src=.*val_tgt: required",
    ):
        train_entry.check(compose_cfg("train", "data=custom"))  # fmt: skip


def test_evaluate_config_composes(compose_cfg) -> None:
    cfg = compose_cfg("evaluate", "ckpt_path=x.ckpt", "input=a.txt")
    assert cfg.decoding.beam_size == 5 and cfg.average_last is None


def test_noam_is_the_papers_rate(compose_cfg) -> None:
    cfg = compose_cfg("train", "model=base", "optimizer=adam", "scheduler=noam")
    assert cfg.optimizer.lr == 1.0 and list(cfg.optimizer.betas) == [0.9, 0.98]
    assert cfg.optimizer.eps == 1e-9
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    scheduler = instantiate(cfg.scheduler)(optimizer)
    for _ in range(4000 - 1):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(512**-0.5 * 4000**-0.5)


def test_data_dir_comes_from_the_environment(compose_cfg, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRANSFORMER_MT_DATA", str(tmp_path / "corpora"))
    cfg = compose_cfg("train", "data=multi30k_de_en")
    assert cfg.paths.data_dir == str(tmp_path / "corpora")
    assert cfg.data.corpus.root == str(tmp_path / "corpora")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.d_modle=256", r"model\.d_modle: unknown key \(did you mean 'd_model'\?\)"),
        ("+trainer.max_step=5", r"trainer\.max_step: unknown key \(did you mean 'max_steps'"),
        ("+callbacks.early_stopping.patiense=3", r"did you mean 'patience'"),
        ("model.d_model=wide", r"model\.d_model='wide': expected int"),
        ("data.max_tokens=lots", r"data\.max_tokens='lots': expected int"),
        ("trainer.precision=bf17-mixed", r"trainer\.precision='bf17-mixed'.*'bf16-mixed'"),
        ("model.pos_enc=rotary", r"valid choices: sinusoidal, learned, rope, alibi"),
        ("module.label_smoothing=high", r"module\.label_smoothing='high': expected float"),
    ],
)
def test_mistakes_fail_at_start_naming_the_choices(override, message, compose_cfg, train_entry):
    cfg = compose_cfg("train", override)
    with pytest.raises((ConfigError, ValueError), match=message):
        train_entry.check(cfg)


def test_unknown_group_option_lists_the_available_ones(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match=r"(?s)Available options.*tiny"):
        compose_cfg("train", "model=huge")


def test_override_of_a_missing_key_is_refused(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match="d_modle"):
        compose_cfg("train", "model.d_modle=256")
