"""The audit log page for coordinators: who approved and sent what, FAQ changes, claims,
opt-ins and opt-outs, erasures; paged and filtered (the query is in bot/audit_log.py)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from bot.audit_log import SYSTEM, AuditEntry, audit_filters, audit_log
from bot.models import Role, User
from console.auth import require, runtime
from console.pages import render

router = APIRouter(include_in_schema=False)

Coordinator = Annotated[User, Depends(require(Role.COORDINATOR, page=True))]
#: Details that hold an account id, shown as its username.
USER_FIELDS = {"written_by", "from", "to"}
PSEUDONYM_CHARS = 12


def _details(entry: AuditEntry, names: dict[int, str]) -> list[tuple[str, str]]:
    shown = []
    for key, value in entry.details.items():
        if key in USER_FIELDS and isinstance(value, int) and entry.action != "channel.move":
            text = names.get(value, f"#{value}")
        elif key == "by" and isinstance(value, str) and len(value) > PSEUDONYM_CHARS:
            # A pseudonym: shortened for reading, never resolved.
            text = value[:PSEUDONYM_CHARS] + "…"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = "–" if value is None else str(value)
        shown.append((key, text))
    return shown


def _case_link(entry: AuditEntry) -> int | None:
    if entry.object_type == "case" and entry.object_id.isdigit():
        return int(entry.object_id)
    case = entry.details.get("case")
    return case if isinstance(case, int) else None


@router.get("/audit")
async def audit_page(
    request: Request,
    user: Coordinator,
    kind: Annotated[str, Query(max_length=30)] = "",
    object_type: Annotated[str, Query(max_length=30)] = "",
    actor: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> HTMLResponse:
    """The audit log, newest first."""
    store = runtime(request).store
    found = await audit_log(
        store, kind=kind or None, object_type=object_type or None, actor=actor or None, page=page
    )
    users = await store.list_users()
    names = {u.id: u.username for u in users}
    kinds, types = await audit_filters(store)
    filters = {"kind": kind, "object_type": object_type, "actor": actor}
    query = urlencode({k: v for k, v in filters.items() if v})
    rows: list[dict[str, Any]] = [
        {"entry": e, "details": _details(e, names), "case": _case_link(e)} for e in found.entries
    ]
    return render(
        request,
        "audit.html",
        {
            "user": user,
            "rows": rows,
            "found": found,
            "filters": filters,
            "kinds": kinds,
            "types": types,
            "actors": [SYSTEM, *sorted(names.values())],
            "query": query,
        },
    )
