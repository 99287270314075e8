"""Tests for bot.settings: defaults, file, environment, precedence and error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.settings import (
    ConfigError,
    Secret,
    Settings,
    declared_settings,
    load_settings,
)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load_file(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Load ``path`` explicitly, with a controlled environment and an empty cwd."""
    return load_settings(str(path), environ=environ or {}, cwd=path.parent)


def config_error(path: Path, text: str) -> str:
    write_config(path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_file(path)
    return str(excinfo.value)


# --- defaults ---------------------------------------------------------------------------


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings == Settings()
    assert settings.source == "defaults"
    assert settings.general.default_language == "en"
    assert settings.general.log_level == "INFO"
    assert settings.database.url == "sqlite+aiosqlite:///peerdesk.db"
    assert settings.console.host == "127.0.0.1"
    assert settings.console.port == 8080
    assert settings.console.secret_key == Secret("")
    assert settings.console.session_hours == 12
    assert settings.console.cookie_secure is False
    assert settings.privacy.pseudonym_key == Secret("")
    assert settings.detection.threshold == 0.0  # the model's own
    assert settings.pipeline.case_window_minutes == 60
    assert settings.pipeline.context_messages == 5
    assert settings.pipeline.suggestions == 3
    assert settings.knowledge_base.content_dir == ""
    assert settings.knowledge_base.suggest_statuses == ("published",)
    assert settings.outbox.poll_seconds == 1.0
    assert settings.outbox.max_attempts == 8
    assert settings.demo.suggest_in_review is True


def test_unrelated_environment_variables_are_ignored(tmp_path: Path) -> None:
    settings = load_settings(environ={"HOME": "/root", "PEERDESK": "x"}, cwd=tmp_path)

    assert settings == Settings()


# --- file values -----------------------------------------------------------------------


def test_file_values_are_read(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "custom.toml",
        """
[general]
default_language = "nl"
log_level = "DEBUG"

[database]
url = "postgresql+asyncpg://peerdesk@db/peerdesk"

[console]
host = "0.0.0.0"
port = 9000
cookie_secure = true

[detection]
threshold = 1

[outbox]
retry_seconds = 0.5
""",
    )

    settings = load_file(path)

    assert settings.source == str(path)
    assert settings.general.default_language == "nl"
    assert settings.general.log_level == "DEBUG"
    assert settings.database.url == "postgresql+asyncpg://peerdesk@db/peerdesk"
    assert settings.console.host == "0.0.0.0"
    assert settings.console.port == 9000
    assert settings.console.cookie_secure is True
    assert settings.detection.threshold == 1.0
    assert isinstance(settings.detection.threshold, float)
    assert settings.outbox.retry_seconds == 0.5
    # Keys the file does not mention keep their defaults.
    assert settings.console.session_hours == 12
    assert settings.pipeline == Settings().pipeline


def test_empty_file_gives_defaults_but_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "empty.toml", "")

    settings = load_file(path)

    assert settings == Settings()
    assert settings.source == str(path)


def test_secret_from_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", '[console]\nsecret_key = "s3cr3t-from-file"\n')

    settings = load_file(path)

    assert settings.console.secret_key.get() == "s3cr3t-from-file"


# --- environment -------------------------------------------------------------------------


def test_environment_values_are_read_and_coerced(tmp_path: Path) -> None:
    environ = {
        "PEERDESK_DATABASE_URL": "postgresql+asyncpg://u@h/d",
        "PEERDESK_CONSOLE_PORT": " 8443 ",
        "PEERDESK_CONSOLE_COOKIE_SECURE": "yes",
        "PEERDESK_DEMO_SUGGEST_IN_REVIEW": "off",
        "PEERDESK_DETECTION_THRESHOLD": "0.7",
        "PEERDESK_GENERAL_DEFAULT_LANGUAGE": "fr",
        "PEERDESK_PRIVACY_PSEUDONYM_KEY": "env-pseudonym-key",
    }

    settings = load_settings(environ=environ, cwd=tmp_path)

    assert settings.database.url == "postgresql+asyncpg://u@h/d"
    assert settings.console.port == 8443
    assert settings.console.cookie_secure is True
    assert settings.demo.suggest_in_review is False
    assert settings.detection.threshold == 0.7
    assert settings.general.default_language == "fr"
    assert settings.privacy.pseudonym_key.get() == "env-pseudonym-key"
    assert settings.source == "defaults"


def test_environment_wins_over_file_which_wins_over_default(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.toml",
        """
[console]
port = 9000
host = "10.0.0.1"

[database]
url = "sqlite+aiosqlite:///from-file.db"
""",
    )
    environ = {
        "PEERDESK_CONSOLE_PORT": "9100",
        "PEERDESK_DATABASE_URL": "sqlite+aiosqlite:///from-env.db",
    }

    settings = load_file(path, environ)

    assert settings.console.port == 9100  # env > file
    assert settings.database.url == "sqlite+aiosqlite:///from-env.db"  # env > file
    assert settings.console.host == "10.0.0.1"  # file > default
    assert settings.console.session_hours == 12  # default


# --- which file ------------------------------------------------------------------------------


def test_explicit_config_that_does_not_exist_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as excinfo:
        load_settings(str(missing), environ={}, cwd=tmp_path)

    assert str(excinfo.value) == f"{missing}: configuration file not found"


def test_peerdesk_config_environment_variable_is_used(tmp_path: Path) -> None:
    path = write_config(tmp_path / "elsewhere.toml", "[console]\nport = 9200\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    settings = load_settings(environ={"PEERDESK_CONFIG": str(path)}, cwd=cwd)

    assert settings.console.port == 9200
    assert settings.source == str(path)


def test_peerdesk_config_pointing_nowhere_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"

    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={"PEERDESK_CONFIG": str(missing)}, cwd=tmp_path)

    assert str(excinfo.value) == f"{missing}: configuration file not found"


def test_peerdesk_toml_in_cwd_is_picked_up(tmp_path: Path) -> None:
    path = write_config(tmp_path / "peerdesk.toml", "[console]\nport = 9300\n")

    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings.console.port == 9300
    assert settings.source == str(path)


def test_explicit_config_wins_over_environment_and_cwd(tmp_path: Path) -> None:
    write_config(tmp_path / "peerdesk.toml", "[console]\nport = 9301\n")
    from_env = write_config(tmp_path / "env.toml", "[console]\nport = 9302\n")
    explicit = write_config(tmp_path / "explicit.toml", "[console]\nport = 9303\n")

    settings = load_settings(
        str(explicit), environ={"PEERDESK_CONFIG": str(from_env)}, cwd=tmp_path
    )

    assert settings.console.port == 9303
    assert settings.source == str(explicit)


def test_peerdesk_config_wins_over_cwd(tmp_path: Path) -> None:
    write_config(tmp_path / "peerdesk.toml", "[console]\nport = 9401\n")
    from_env = write_config(tmp_path / "env.toml", "[console]\nport = 9402\n")

    settings = load_settings(environ={"PEERDESK_CONFIG": str(from_env)}, cwd=tmp_path)

    assert settings.console.port == 9402


# --- file errors --------------------------------------------------------------------------


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"

    message = config_error(path, "[console\nport = 1\n")

    assert message.startswith(f"{path}: not valid TOML: ")


def test_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[general]\nlog_level = "caf\xe9"\n'.encode("latin-1"))

    with pytest.raises(ConfigError) as excinfo:
        load_file(path)

    assert str(excinfo.value) == f"{path}: configuration file is not valid UTF-8"


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, '[console]\nport = "abc"\n')

    assert message == f"{path}: console.port: expected a whole number, got 'abc'"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[console]\nport = 8080.0\n", "console.port: expected a whole number, got 8080.0"),
        ("[console]\nport = true\n", "console.port: expected a whole number, got True"),
        ('[console]\ncookie_secure = "yes"\n', "console.cookie_secure: expected true or false"),
        ('[detection]\nthreshold = "0.5"\n', "detection.threshold: expected a number, got '0.5'"),
        ("[console]\nhost = 127\n", "console.host: expected a text value in quotes, got 127"),
        ("[console]\nsecret_key = 1234\n", "console.secret_key: expected a text value in quotes"),
    ],
)
def test_file_values_are_not_coerced_from_other_types(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, body)

    assert message.startswith(f"{path}: {expected}")


def test_secret_type_error_does_not_echo_the_value(tmp_path: Path) -> None:
    message = config_error(tmp_path / "c.toml", "[privacy]\npseudonym_key = 987654321\n")

    assert "987654321" not in message


def test_out_of_range_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "[console]\nport = 0\n")

    assert message == f"{path}: console.port: must be at least 1, got 0"


def test_above_maximum_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "[detection]\nthreshold = 1.5\n")

    assert message == f"{path}: detection.threshold: must be at most 1.0, got 1.5"


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "[consle]\nport = 1\n")

    assert message == f"{path}: [consle]: unknown section; did you mean 'console'?"


def test_unknown_section_without_close_match(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "[zzzzzz]\nx = 1\n")

    assert message == f"{path}: [zzzzzz]: unknown section"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "[console]\nprot = 9000\n")

    assert message == f"{path}: console.prot: unknown setting; did you mean 'port'?"


def test_top_level_key_instead_of_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, "console = 3\n")

    assert message == f"{path}: console: expected a [console] table"


def test_bad_choice_names_file_key_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, '[general]\ndefault_language = "de"\n')

    assert message == f"{path}: general.default_language: 'de' is not one of: nl, fr, en"


def test_bad_database_url_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, '[database]\nurl = "mysql://localhost/peerdesk"\n')

    assert message == (
        f"{path}: database.url: expected a URL starting with sqlite+aiosqlite:// or "
        "postgresql+asyncpg://, got mysql://…"
    )


# --- list setting ---------------------------------------------------------------------------


def test_list_setting_from_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.toml", '[knowledge_base]\nsuggest_statuses = ["published", "in_review"]\n'
    )

    settings = load_file(path)

    assert settings.knowledge_base.suggest_statuses == ("published", "in_review")


def test_list_setting_from_environment_is_comma_separated(tmp_path: Path) -> None:
    environ = {"PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES": " published, in_review ,, "}

    settings = load_settings(environ=environ, cwd=tmp_path)

    assert settings.knowledge_base.suggest_statuses == ("published", "in_review")


def test_list_setting_must_be_a_list_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, '[knowledge_base]\nsuggest_statuses = "published"\n')

    assert message == (
        f"{path}: knowledge_base.suggest_statuses: expected a list of text values, got 'published'"
    )


def test_list_setting_items_must_be_valid_choices(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"

    message = config_error(path, '[knowledge_base]\nsuggest_statuses = ["published", "live"]\n')

    assert message == (
        f"{path}: knowledge_base.suggest_statuses: 'live' is not one of: "
        "draft, in_review, published, expired"
    )


def test_list_setting_from_environment_checks_choices(tmp_path: Path) -> None:
    environ = {"PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES": "published,live"}

    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ=environ, cwd=tmp_path)

    assert str(excinfo.value) == (
        "environment variable PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES: "
        "knowledge_base.suggest_statuses: 'live' is not one of: "
        "draft, in_review, published, expired"
    )


# --- environment errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "PEERDESK_CONSOLE_PORT",
            "abc",
            "environment variable PEERDESK_CONSOLE_PORT: console.port: "
            "expected a whole number, got 'abc'",
        ),
        (
            "PEERDESK_CONSOLE_PORT",
            "70000",
            "environment variable PEERDESK_CONSOLE_PORT: console.port: "
            "must be at most 65535, got 70000",
        ),
        (
            "PEERDESK_CONSOLE_COOKIE_SECURE",
            "maybe",
            "environment variable PEERDESK_CONSOLE_COOKIE_SECURE: console.cookie_secure: "
            "expected true or false, got 'maybe'",
        ),
        (
            "PEERDESK_DETECTION_THRESHOLD",
            "high",
            "environment variable PEERDESK_DETECTION_THRESHOLD: detection.threshold: "
            "expected a number, got 'high'",
        ),
        (
            "PEERDESK_GENERAL_DEFAULT_LANGUAGE",
            "de",
            "environment variable PEERDESK_GENERAL_DEFAULT_LANGUAGE: "
            "general.default_language: 'de' is not one of: nl, fr, en",
        ),
    ],
)
def test_environment_error_names_the_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ={variable: value}, cwd=tmp_path)

    assert str(excinfo.value) == expected


def test_environment_error_even_when_file_is_valid(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", "[console]\nport = 9000\n")

    with pytest.raises(ConfigError) as excinfo:
        load_file(path, {"PEERDESK_DATABASE_URL": "mysql://x"})

    assert str(excinfo.value).startswith(
        "environment variable PEERDESK_DATABASE_URL: database.url:"
    )


# --- secrets ----------------------------------------------------------------------------------


def test_secret_hides_its_value() -> None:
    secret = Secret("hunter2")

    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "Secret('**********')"
    assert f"{secret}" == "Secret('**********')"
    assert "hunter2" not in repr([secret])
    assert secret.get() == "hunter2"
    assert bool(secret) is True


def test_empty_secret() -> None:
    secret = Secret("")

    assert repr(secret) == "Secret('')"
    assert bool(secret) is False
    assert secret.get() == ""


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_settings_repr_never_shows_secrets(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", '[console]\nsecret_key = "file-secret-value"\n')
    environ = {"PEERDESK_PRIVACY_PSEUDONYM_KEY": "env-secret-value"}

    settings = load_file(path, environ)

    assert settings.console.secret_key.get() == "file-secret-value"
    assert settings.privacy.pseudonym_key.get() == "env-secret-value"
    for text in (repr(settings), str(settings), repr(settings.console), str(settings.privacy)):
        assert "file-secret-value" not in text
        assert "env-secret-value" not in text
    assert "Secret('**********')" in repr(settings)


# --- declarations ------------------------------------------------------------------------------


def test_declared_settings_lists_every_field() -> None:
    expected: list[str] = []
    for section in dataclasses.fields(Settings):
        if section.name == "source":
            continue
        section_class = section.default_factory
        assert isinstance(section_class, type)
        expected += [f"{section.name}.{f.name}" for f in dataclasses.fields(section_class)]

    infos = declared_settings()

    assert [info.name for info in infos] == expected
    assert len(set(expected)) == len(expected)
    assert "knowledge_base.suggest_statuses" in expected
    assert "console.secret_key" in expected


def test_declared_settings_describe_each_setting() -> None:
    by_name = {info.name: info for info in declared_settings()}

    port = by_name["console.port"]
    assert port.env == "PEERDESK_CONSOLE_PORT"
    assert port.default == 8080
    assert port.type_name == "int"
    assert port.metadata["minimum"] == 1
    assert port.metadata["maximum"] == 65535
    assert by_name["knowledge_base.suggest_statuses"].env == (
        "PEERDESK_KNOWLEDGE_BASE_SUGGEST_STATUSES"
    )
    assert by_name["general.default_language"].metadata["choices"] == ("nl", "fr", "en")
    assert [name for name, info in by_name.items() if not info.help.strip()] == []


def test_a_database_password_never_shows_in_a_repr(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://app:hunter2@db/peerdesk"
    settings = load_settings(None, environ={"PEERDESK_DATABASE_URL": url}, cwd=tmp_path)
    assert settings.database.url == url
    assert "hunter2" not in repr(settings)
