"""Dates and times in the reader's language and the console's time zone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from bot.models import Role
from bot.runtime import Runtime
from bot.settings import ConfigError
from console import dates
from tests.conftest import add_user, flagged_case, login, make_settings

WINTER = dt.datetime(2026, 11, 24, 21, 5, 7, tzinfo=dt.UTC)  # 22:05 in Brussels (UTC+1)
SUMMER = dt.datetime(2026, 7, 1, 21, 5, tzinfo=dt.UTC)  # 23:05 in Brussels (UTC+2)


@pytest.mark.parametrize(
    ("language", "expected"),
    [("nl", "24-11-2026, 22:05"), ("fr", "24/11/2026 22:05"), ("en", "11/24/26, 10:05\u202fPM")],
)
def test_a_moment_is_written_the_way_of_the_language_in_the_zone(
    language: str, expected: str
) -> None:
    assert dates.moment(WINTER, zone="Europe/Brussels", language=language) == expected


def test_summer_time_and_other_zones() -> None:
    assert dates.moment(SUMMER, zone="Europe/Brussels", language="nl").endswith("23:05")
    assert dates.moment(SUMMER, zone="UTC", language="nl").endswith("21:05")
    assert dates.moment(WINTER, zone="Europe/Brussels", language="nl", seconds=True) == (
        "24 nov 2026, 22:05:07"
    )
    # A naive value is taken as UTC (what the store hands back on SQLite).
    naive = WINTER.replace(tzinfo=None)
    assert dates.moment(naive, zone="Europe/Brussels", language="fr") == "24/11/2026 22:05"


def test_the_day_of_a_late_evening_moment_is_the_local_day() -> None:
    late = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC)  # already the 25th in Brussels
    assert dates.day(late, zone="Europe/Brussels", language="fr") == "25 nov. 2026"
    assert dates.day(late, zone="UTC", language="en") == "Nov 24, 2026"
    assert dates.day(dt.date(2026, 3, 1), zone="UTC", language="nl") == "1 mrt 2026"


def test_week_labels_name_the_month_in_the_language() -> None:
    monday = dt.date(2026, 2, 9)
    assert [dates.week_label(monday, language=x) for x in ("en", "nl", "fr")] == [
        "9 Feb",
        "9 feb",
        "9 févr.",
    ]


def test_ages_in_one_unit_in_the_language() -> None:
    now = WINTER
    ago = [now - dt.timedelta(seconds=s) for s in (5, 300, 7200, 3 * 86400)]
    assert [dates.age(a, language="en", now=now) for a in ago] == [
        "5 sec", "5 min", "2 hr", "3 days",
    ]  # fmt: skip
    assert [dates.age(a, language="nl", now=now) for a in ago][2:] == ["2 uur", "3 dagen"]
    assert dates.age(ago[3], language="fr", now=now) == "3\u202fj"
    assert dates.age(now + dt.timedelta(seconds=30), language="en", now=now) == "0 sec"


def test_an_unknown_time_zone_is_a_clear_configuration_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert make_settings(tmp_path, url).console.timezone == "Europe/Brussels"
    assert make_settings(tmp_path, url, PEERDESK_CONSOLE_TIMEZONE="UTC").console.timezone == "UTC"
    with pytest.raises(ConfigError, match=r"timezone.*Mars/Olympus"):
        make_settings(tmp_path, url, PEERDESK_CONSOLE_TIMEZONE="Mars/Olympus")


async def test_pages_show_local_times_with_the_exact_utc_instant(
    runtime: Runtime, client: AsyncClient
) -> None:
    await flagged_case(runtime)  # the opt-in is in the audit log
    await add_user(runtime, "cora", Role.COORDINATOR)
    token = await login(client, "cora")
    await client.post("/language", data={"language": "nl", "csrf_token": token})
    page = (await client.get("/audit")).text
    assert 'lang="nl"' in page and '<time datetime="' in page
    first = page.split('<time datetime="', 1)[1]
    exact, shown = first.split('"', 1)[0], first.split(">", 1)[1].split("<", 1)[0]
    instant = dt.datetime.fromisoformat(exact)
    assert instant.utcoffset() == dt.timedelta(0)  # the attribute keeps the UTC instant
    local = instant.astimezone(ZoneInfo("Europe/Brussels"))
    assert shown == f"{local.day} {dates.day(local, zone='UTC', language='nl').split()[1]} " + (
        f"{local.year}, {local:%H:%M:%S}"
    )


def test_durations_in_one_unit_with_the_language_s_decimal_mark() -> None:
    seconds = (None, 45, 720, 12600, 181440)
    assert [dates.duration(s, language="en") for s in seconds] == [
        "–", "45 sec", "12 min", "3.5 hr", "2.1 days",
    ]  # fmt: skip
    assert [dates.duration(s, language="nl") for s in seconds][3:] == ["3,5 uur", "2,1 dagen"]
    assert dates.duration(181440, language="fr") == "2,1\u202fj"
