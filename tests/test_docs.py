"""The example configuration and the docs keep up with the declared settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bot.settings import (
    Secret,
    Settings,
    declared_settings,
    load_settings,
    render_example,
    render_table,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _uncommented() -> str:
    return re.sub(r"(?m)^# (\w+ = .*)$", r"\1", EXAMPLE.read_text(encoding="utf-8"))


def test_example_config_lists_every_setting_with_help_and_env() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(_uncommented())
    for info in declared_settings():
        assert info.key in data.get(info.section, {}), f"{info.name} missing from the example"
        assert info.env in text, f"{info.env} missing from the example"
        assert info.help.split()[0] in text
    declared = {(i.section, i.key) for i in declared_settings()}
    listed = {(section, key) for section, table in data.items() for key in table}
    assert listed == declared


def test_example_config_shows_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(_uncommented(), encoding="utf-8")
    loaded = load_settings(str(path), environ={}, cwd=tmp_path)
    assert loaded == Settings()
    assert loaded.console.secret_key == Secret("")


def test_generated_files_are_up_to_date() -> None:
    """Run scripts/gen-docs after changing a setting."""
    assert EXAMPLE.read_text(encoding="utf-8") == render_example()
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == render_table()


def test_configuration_doc_lists_every_setting() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for info in declared_settings():
        assert f"`{info.name}`" in doc and f"`{info.env}`" in doc


def test_readme_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install torch==2.13.0" in readme
    assert "pip install -e '.[dev]'" in readme
    assert "peerdesk run --demo" in readme
    assert "scripts/check" in readme
