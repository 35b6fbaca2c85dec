"""Flag definitions and phases from conf/flags.yml, validated before anything touches the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import PROJECT_ROOT, load_model
from controller.config_base import ConfigError
from controller.data.flags import FlagError, FlagsFile, FlagSpec

SHIPPED = PROJECT_ROOT / "conf" / "flags.yml"


@pytest.fixture(scope="module")
def specs() -> FlagsFile:
    return load_model(FlagsFile, SHIPPED)


def test_defaults_are_phase_one_rule_signals_without_ml_or_shadows(specs: FlagsFile) -> None:
    defaults = {name: spec.default for name, spec in specs.flags.items()}
    assert defaults["phase"] == 1
    assert defaults["trading.enabled"] is True
    assert defaults["ml.enabled"] is False
    assert defaults["shadow.enabled"] is False
    assert all(defaults[name] == value for name, value in specs.phases[1].items())


def test_phases_bring_ml_then_shadows_back(specs: FlagsFile) -> None:
    assert specs.phase_values(0)["trading.enabled"] is False
    assert specs.phase_values(2)["profile"] == "validation"
    assert specs.phase_values(3)["ml.enabled"] is True and specs.phase_values(3)["shadow.enabled"] is False
    assert specs.phase_values(4)["shadow.enabled"] is True and specs.phase_values(4)["shadow.apply"] is False
    assert [specs.phase_values(n)["phase"] for n in range(5)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        (FlagSpec(kind="bool", default=False), "on", True),
        (FlagSpec(kind="bool", default=False), "False", False),
        (FlagSpec(kind="int", default=1, min=0, max=4), "3", 3),
        (FlagSpec(kind="float", default=0.5, min=0, max=1), "0.75", 0.75),
        (FlagSpec(kind="text", default="a", choices=("a", "b")), "b", "b"),
    ],
)
def test_command_line_values_are_parsed_to_the_flag_type(spec: FlagSpec, text: str, expected: object) -> None:
    value = spec.parse(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "text", "allowed"),
    [
        (FlagSpec(kind="bool", default=False), "maybe", "true or false"),
        (FlagSpec(kind="int", default=1, min=0, max=4), "5", "a whole number from 0 to 4"),
        (FlagSpec(kind="int", default=1, min=0, max=4), "2.5", "a whole number from 0 to 4"),
        (FlagSpec(kind="float", default=0.5, min=0, max=1), "nan", "a number from 0 to 1"),
        (FlagSpec(kind="text", default="a", choices=("a", "b")), "c", "one of a, b"),
    ],
)
def test_invalid_values_are_refused_saying_what_is_allowed(spec: FlagSpec, text: str, allowed: str) -> None:
    with pytest.raises(FlagError, match=allowed):
        spec.parse(text)


def test_unknown_flag_is_refused_listing_known_ones(specs: FlagsFile) -> None:
    with pytest.raises(FlagError, match=r"unknown flag 'ml.enabeld'; known flags: .*ml.enabled"):
        specs.spec("ml.enabeld")


def test_a_phase_naming_an_unknown_flag_is_a_config_error(tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("    shadow.apply: false\n    retention.enabled: true\n  2:",
                                       "    shadow.aply: false\n    retention.enabled: true\n  2:")
    bad = tmp_path / "flags.yml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"flags.yml: .*phases.1.shadow.aply: unknown flag"):
        load_model(FlagsFile, bad)


def test_a_default_outside_its_range_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "flags.yml"
    bad.write_text(SHIPPED.read_text().replace("default: 0.0", "default: 1.6"))
    with pytest.raises(ConfigError, match=r"flags.ml.min_confidence: .*default: expected a number from 0 to 1"):
        load_model(FlagsFile, bad)
