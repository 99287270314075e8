"""The design's dependency rules, checked on the source (DESIGN.md, "Top level")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_knowledge_base_and_prompts_know_nothing_of_the_rest() -> None:
    for package in ("knowledge_base", "prompts"):
        for module, names in _imports(package).items():
            assert not names & {"bot", "console"}, module


def test_only_the_cli_composes_the_console() -> None:
    users = sorted(m for m, names in _imports("bot").items() if "console" in names)
    assert users == ["bot/cli.py"]


def test_only_adapter_modules_import_platform_sdks() -> None:
    for package in ("bot", "console", "knowledge_base", "prompts"):
        for module, names in _imports(package).items():
            if names & {"telegram", "discord"}:
                assert module.endswith(("telegram_adapter.py", "discord_adapter.py")), module


def test_no_module_shadows_a_platform_sdk() -> None:
    for package in ("bot", "console"):
        stems = {p.stem for p in (ROOT / package).rglob("*.py")}
        assert not stems & {"telegram", "discord"}
