"""Copying a deployment from SQLite to PostgreSQL (`peerdesk migrate-sqlite-to-postgres`),
from a real SQLite file into a real, new PostgreSQL database."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.copy_store import CopyError, copy_store, postgres_url, sqlite_url
from bot.models import CaseStatus, DismissReason, Role, Visibility
from bot.runtime import build_runtime
from bot.store import Store
from tests.conftest import (
    POSTGRES_ADMIN_DSN,
    _pg_admin,
    _postgres_available,
    add_user,
    flagged_case,
    make_settings,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_db() -> Iterator[str]:
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"peerdesk_copy_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _deployment(tmp_path: Path) -> Path:
    """A SQLite store with a bit of everything: FAQ, users, cases, replies, outbox, audit,
    lexicon edits, secrets."""
    path = tmp_path / "peerdesk.db"
    rt = await build_runtime(make_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    try:
        await rt.faq.import_dir()
        volunteer = await add_user(rt, "vera")
        expert = await add_user(rt, "erik", Role.EXPERT)
        answered = await flagged_case(rt, "is xtc met alcohol gevaarlijk?")
        await rt.store.approve_reply(
            answered,
            text="Liever niet samen: meer kans op uitdroging.",
            visibility=Visibility.PUBLIC,
            written_by=volunteer.id,
            approved_by=volunteer.id,
        )
        dismissed = await flagged_case(rt, "hoeveel coke snuif jij per avond?")
        await rt.store.dismiss_case(dismissed, volunteer.id, DismissReason.SPAM)
        await rt.store.add_lexicon_edit(
            kind="term", term="blauwkes", substance="mdma", strong=True, author=expert.id
        )
    finally:
        await rt.close()
    return path


async def test_everything_is_copied_and_the_copy_works(tmp_path: Path, postgres_db: str) -> None:
    source = await _deployment(tmp_path)
    target = postgres_url(postgres_db)
    seen: list[str] = []
    copied = await copy_store(
        sqlite_url(str(source)), target, progress=lambda table, n: seen.append(table)
    )
    assert copied["faq_entries"] >= 30 and copied["messages"] == 2 and copied["replies"] == 1
    assert copied["cases"] == 2 and copied["lexicon_edits"] == 1 and copied["meta"] >= 1
    assert seen == list(copied)

    old, new = Store(sqlite_url(str(source))), Store(target)
    await old.initialize()
    await new.initialize()
    try:
        for case in await old.list_cases(statuses=list(CaseStatus)):
            before, after = await old.get_case(case.id), await new.get_case(case.id)
            assert before == after
        assert await new.get_or_create_secret("pseudonym") == await old.get_or_create_secret(
            "pseudonym"
        )
        assert await new.feedback_labels() == await old.feedback_labels()
        # New rows get new ids: the sequences moved past the copied ones.
        user = await new.add_user("newcomer", "x", Role.VOLUNTEER)
        assert user.id > max(u.id for u in await old.list_users())
    finally:
        await old.close()
        await new.close()

    with pytest.raises(CopyError, match="already holds data"):
        await copy_store(sqlite_url(str(source)), target)


def test_the_command_checks_its_arguments_and_copies(tmp_path: Path, postgres_db: str) -> None:
    source = asyncio.run(_deployment(tmp_path))
    config = tmp_path / "none.toml"
    config.write_text("", encoding="utf-8")

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*argv, "--config", str(config)], stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    code, _, err = run("migrate-sqlite-to-postgres", str(tmp_path / "missing.db"), postgres_db)
    assert code == 1 and "missing.db: no such SQLite file" in err
    code, _, err = run("migrate-sqlite-to-postgres", str(source), f"sqlite:///{source}")
    assert code == 1 and "the target must be a PostgreSQL database" in err
    code, out, err = run("migrate-sqlite-to-postgres", str(source), postgres_db)
    assert code == 0, err
    assert "copied" in out and "messages: 2 rows" in err


def test_urls_are_checked_without_showing_passwords() -> None:
    with pytest.raises(CopyError, match="must be a PostgreSQL") as caught:
        postgres_url("mysql://root:hunter2@localhost/db")
    assert "hunter2" not in str(caught.value)
    assert postgres_url("postgres://u:p@h/d").startswith("postgresql+asyncpg://u:p@h/d")
    with pytest.raises(CopyError, match="must be a SQLite"):
        sqlite_url("postgresql://u:p@h/d")
