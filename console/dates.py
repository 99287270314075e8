"""Dates, times and ages as the reader writes them: in the console's time zone
(``console.timezone``) and the way of the reader's interface language ("24-11-2026, 22:05"
in Dutch, "24/11/2026 22:05" in French, "11/24/26, 10:05 PM" in English).

Everything is stored and exchanged (API, CSV) in UTC; only what a person reads is
converted. A time on a page is a ``<time>`` element whose ``datetime`` attribute keeps
the exact UTC instant, shown as a tooltip too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime, format_timedelta
from babel.units import format_unit
from markupsafe import Markup

from bot.models import utcnow
from console import i18n

DEFAULT_ZONE = "UTC"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def moment(value: dt.datetime, *, zone: str, language: str, seconds: bool = False) -> str:
    """``value`` in ``zone``, written the way of ``language``."""
    return str(
        format_datetime(
            _aware(value), "medium" if seconds else "short", tzinfo=ZoneInfo(zone), locale=language
        )
    )


def day(value: dt.date | dt.datetime, *, zone: str, language: str) -> str:
    """The day of ``value`` (in ``zone`` for a moment), month named in ``language``."""
    if isinstance(value, dt.datetime):
        value = _aware(value).astimezone(ZoneInfo(zone)).date()
    return str(format_date(value, "medium", locale=language))


def week_label(start: dt.date, *, language: str) -> str:
    """A short label for the week starting on ``start`` (charts and tables): "24 nov"."""
    return str(format_date(start, "d MMM", locale=language))


def age(value: dt.datetime, *, language: str, now: dt.datetime | None = None) -> str:
    """How long ago ``value`` was, in one unit: "5 min", "2 uur", "3 j"."""
    elapsed = max((now or utcnow()) - _aware(value), dt.timedelta(0))
    return str(format_timedelta(elapsed, format="short", threshold=1, locale=language))


def duration(seconds: float | None, *, language: str) -> str:
    """A delay in one unit, as people say it: "45 sec", "12 min", "3,5 uur", "2,1 j";
    "–" for none. Minutes are whole, hours and days have one decimal."""
    if seconds is None:
        return "–"
    value: float
    if seconds < 60:
        unit, value = "duration-second", round(seconds)
    elif seconds < 3600:
        unit, value = "duration-minute", round(seconds / 60)
    elif seconds < 86400:
        unit, value = "duration-hour", round(seconds / 3600, 1)
    else:
        unit, value = "duration-day", round(seconds / 86400, 1)
    return str(format_unit(value, unit, length="short", format="#,##0.#", locale=language))


# -- for the templates ---------------------------------------------------------------------


def _zone(context: Any) -> str:
    request = context.get("request")
    runtime = getattr(getattr(getattr(request, "app", None), "state", None), "runtime", None)
    if runtime is None:
        return DEFAULT_ZONE
    return str(runtime.settings.console.timezone)


@jinja2.pass_context
def _when_filter(context: Any, value: dt.datetime | None, seconds: bool = False) -> Markup:
    if value is None:
        return Markup("—")
    exact = _aware(value).astimezone(dt.UTC).isoformat(timespec="seconds")
    shown = moment(value, zone=_zone(context), language=i18n.current(), seconds=seconds)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(exact, shown)


@jinja2.pass_context
def _day_filter(context: Any, value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return "—"
    return day(value, zone=_zone(context), language=i18n.current())


def _age_filter(value: dt.datetime) -> str:
    return age(value, language=i18n.current())


def install(env: jinja2.Environment) -> None:
    """Give templates ``|when`` (date and time; ``|when(seconds=True)``), ``|day`` and
    ``|age``."""
    env.filters["when"] = _when_filter
    env.filters["day"] = _day_filter
    env.filters["age"] = _age_filter
