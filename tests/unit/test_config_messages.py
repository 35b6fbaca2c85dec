"""The exact messages a user gets for a broken config (controller.config_base), found weak by mutation testing."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ControllerConfig, load_config, load_secrets
from controller.config_base import PROJECT_ROOT, ConfigError, Frozen, load_model, read_yaml, resolve
from controller.scan.signals import SizingParams


def write(tmp_path: Path, text: str, name: str = "controller.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def message(path: Path, model: type = ControllerConfig) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path) if model is ControllerConfig else load_model(model, path)
    return str(error.value)


def test_a_yaml_syntax_error_names_line_and_column_and_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "log:\n  level: INFO\n bad: [\n")
    assert message(path) == (f"{path}: invalid YAML at line 3, column 2: expected <block end>, but found "
                             "'<block mapping start>'")


def test_a_yaml_tag_that_could_run_code_is_refused_naming_where(tmp_path: Path) -> None:
    path = write(tmp_path, "a: !!python/name:os.system\n")
    assert message(path) == (f"{path}: invalid YAML at line 1, column 4: could not determine a constructor for the"
                             " tag 'tag:yaml.org,2002:python/name:os.system'")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_a_top_level_that_is_not_a_mapping_names_what_it_is(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    assert message(path) == f"{path}: expected a mapping of keys at the top level, got {kind}"


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert read_yaml(write(tmp_path, "")) == {}
    assert load_config(write(tmp_path, "# nothing\n")) == ControllerConfig()


def test_an_unreadable_path_names_it(tmp_path: Path) -> None:
    assert message(tmp_path) == f"{tmp_path}: cannot read (Is a directory)"


def test_one_line_per_problem_with_the_allowed_keys_and_the_field_description(tmp_path: Path) -> None:
    path = write(tmp_path, "sizing:\n  quote_amont: 5\n  max_balance_share: 2\nbogus: 1\n")
    lines = message(path).splitlines()
    allowed = ", ".join(SizingParams.model_fields)
    assert lines == [
        f"{path}: sizing.max_balance_share: Input should be less than or equal to 1, got 2"
        " (share of balance open positions may use)",
        f"{path}: sizing.quote_amont: unknown key; allowed keys here: {allowed}",
        f"{path}: bogus: unknown key; allowed keys here: {', '.join(ControllerConfig.model_fields)}",
    ]


def test_a_field_without_a_description_gets_no_parentheses(tmp_path: Path) -> None:
    path = write(tmp_path, "sizing:\n  max_open_per_symbol: 0\n")
    assert message(path) == f"{path}: sizing.max_open_per_symbol: Input should be greater than or equal to 1, got 0"


def test_a_mapping_given_where_a_number_belongs_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "sizing:\n  quotes: {USDT: {amount: 50, balance: {a: 1}}}\n")
    # (the description lookup stops at the mapping of quotes, so no parentheses here)
    assert message(path) == f"{path}: sizing.quotes.USDT.balance: Input should be a valid number"


def test_a_mapping_where_a_path_belongs_is_named_with_the_field_description(tmp_path: Path) -> None:
    path = write(tmp_path, "flags:\n  file:\n    x: 1\n")
    assert message(path) == (f"{path}: flags.file: Input is not a valid path for <class 'pathlib.Path'>"
                             " (flag definitions and phase presets)")


class Section(Frozen):
    size: int = 1


def test_load_model_reads_a_section_file_with_the_same_messages(tmp_path: Path) -> None:
    assert load_model(Section, write(tmp_path, "size: 3\n", "s.yml")) == Section(size=3)
    path = write(tmp_path, "sise: 3\n", "s.yml")
    assert message(path, Section) == f"{path}: sise: unknown key; allowed keys here: size"


def test_a_relative_path_is_resolved_against_the_project_root_and_an_absolute_one_kept() -> None:
    assert resolve(Path("conf/flags.yml")) == PROJECT_ROOT / "conf" / "flags.yml"
    assert resolve(Path("/etc/x.yml")) == Path("/etc/x.yml")
    assert ControllerConfig().resolve(Path("conf/x.yml")) == PROJECT_ROOT / "conf" / "x.yml"


def test_a_bad_secret_is_named_without_echoing_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.chdir(PROJECT_ROOT / "conf")  # no .env here
    assert load_secrets().database_url is not None
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    assert load_secrets().supabase_url == "https://example.supabase.co"
