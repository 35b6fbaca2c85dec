"""Config loading and validation: every error names the file (or variable), the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from controller.cli.main import app
from controller.config import DEFAULT_CONFIG, load_config
from controller.config_base import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "controller.yml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert config.database.name == "trading"
    assert config.flags.file == Path("conf/flags.yml")


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  embeded: false\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "database.embeded: unknown key" in message
    assert "embedded" in message.split("allowed keys here:")[1]


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database.connect_timeout_s: Input should be a valid integer"):
        load_config(write(tmp_path, "database:\n  connect_timeout_s: soon\n"))


def test_out_of_range_value_says_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "database:\n  connect_timeout_s: 0\n"))
    assert "database.connect_timeout_s: Input should be greater than or equal to 1, got 0" in str(error.value)


def test_invalid_choice_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log.level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"):
        load_config(write(tmp_path, "log:\n  level: LOUD\n"))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"controller.yml: invalid YAML at line 2"):
        load_config(write(tmp_path, "log:\n\tlevel: INFO\n"))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yml: config file not found"):
        load_config(tmp_path / "nope.yml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLLER_LOG__LEVEL", "DEBUG")
    monkeypatch.setenv("CONTROLLER_DATABASE__CONNECT_TIMEOUT_S", "42")
    config = load_config(write(tmp_path, "log:\n  level: WARNING\ndatabase:\n  name: other\n"))
    assert config.log.level == "DEBUG"
    assert config.database.connect_timeout_s == 42
    assert config.database.name == "other"


def test_a_bad_environment_override_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTROLLER_DATABASE__CONNECT_TIMEOUT_S", "-5")
    with pytest.raises(ConfigError, match=r"environment variable CONTROLLER_DATABASE__CONNECT_TIMEOUT_S"):
        load_config(write(tmp_path, ""))


def test_config_is_frozen() -> None:
    config = load_config(DEFAULT_CONFIG)
    with pytest.raises(ValidationError):
        config.log.level = "DEBUG"  # type: ignore[misc]


def test_cli_with_a_misspelt_key_exits_non_zero_naming_key_and_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "databse:\n  name: trading\n")
    result = CliRunner().invoke(app, ["--config", str(bad), "flags", "show"])
    assert result.exit_code != 0
    assert "databse" in result.output
    assert str(bad) in result.output
