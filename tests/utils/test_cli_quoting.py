"""Free-text arguments survive Hydra's override parser: its own parser is the reference."""

import random

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from transformer_mt.utils.cli import hydra_quote, quote_free_text

ALPHABET = "ab 我喜欢小狗。'\"\\,=${}[]():#@!?%*+-_~\t" + "é"


def parsed_value(arg: str) -> str:
    """What main() would see: Hydra's override value, then OmegaConf's resolution."""
    override = OverridesParser.create().parse_overrides([arg])[0]
    return OmegaConf.create({"text": override.value()}).text


def test_any_string_round_trips_through_hydra():
    rng = random.Random(0)
    samples = ["", "\\", "'", "\\'", "a\\\\", "${x}", "a,b", "我喜欢小狗", "it's", "x\\${y}"]
    for _ in range(300):
        samples.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))))
    for text in samples:
        assert parsed_value(f"text={hydra_quote(text)}") == text, text


def test_only_the_free_text_keys_are_quoted_and_quoted_values_are_kept():
    argv = ["explain.py", "text=我喜欢小狗", "+text=a,b", "model.d_model=4", "decoding=beam",
            "text='already quoted'", 'text="我喜欢小狗"']  # fmt: skip
    out = quote_free_text(argv, ["text"])
    assert out[0] == "explain.py" and out[3:5] == ["model.d_model=4", "decoding=beam"]
    assert [parsed_value(a.lstrip("+")) for a in (out[1], out[2], out[5], out[6])] == [
        "我喜欢小狗", "a,b", "already quoted", "我喜欢小狗"
    ]  # fmt: skip
    assert out[5] == "text='already quoted'" and out[6] == 'text="我喜欢小狗"'
