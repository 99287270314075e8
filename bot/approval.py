"""Four-eyes: when a reply needs a second approver before it may be sent.

The policy (settings ``[approval]``) names three situations: the case is urgent, the
reply's topic (its FAQ entry, or the case's best suggestion) carries a tag such as
``high_risk`` (dangerous combinations, GHB dosing), or the person's messages suggest
they are under 18. The minor check is a heuristic on what people say about their age;
it leans towards asking for a second look.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from bot.detector import fold
from bot.models import CaseDetail
from bot.settings import ApprovalSettings

_AGES = [
    "1[0-7]",
    *"twaalf dertien veertien vijftien zestien zeventien".split(),
    *"douze treize quatorze quinze seize dix-sept".split(),
    *"twelve thirteen fourteen fifteen sixteen seventeen".split(),
]
_AGE = "(?:" + "|".join(_AGES) + ")"
_I_AM = "(?:ik ben|ben pas|ben maar|ik word|i'?m|i am|im only|i'?m only)"
# "ik ben 15 minuten te laat", "i'm 15 mins away": not an age.
_NOT_AN_AGE = r"(?!\s*(?:euro|€|min|minuten|mins?|minutes|uur|hours?|km|kg|keer|times|%|procent))"
_UNIT = r"(?:jaar|jr|ans|years? old|yo|y/o|yrs? old)"
_WORDS = [
    r"minderjarig\w*",
    "mineure?s?",
    "underage",
    "under 18",
    "onder de 18",
    "moins de 18 ans",
    r"(?:eerste|tweede|derde|1e|2e|3e) middelbaar",
    r"en (?:seconde|troisieme|quatrieme|3e|4e)\b",
    r"year (?:9|10|11)",
]
_MINOR = re.compile(
    rf"\b{_I_AM}\s+{_AGE}\b{_NOT_AN_AGE}"
    rf"|\b{_AGE}\s*{_UNIT}\b"
    rf"|\b(?:{'|'.join(_WORDS)})"
)


def suggests_minor(text: str) -> bool:
    """Whether ``text`` says or implies its writer is under 18."""
    return _MINOR.search(fold(text)) is not None


def second_approval_reasons(
    policy: ApprovalSettings,
    detail: CaseDetail,
    *,
    entry_id: str | None,
    tags_of: Callable[[str], Sequence[str]],
) -> list[str]:
    """Why a reply to this case needs a second approver (empty: it does not)."""
    reasons: list[str] = []
    case = detail.case
    if policy.urgent and case.urgent:
        reasons.append("the case is urgent")
    topics = [
        e for e in (entry_id, detail.suggestions[0].entry_id if detail.suggestions else None) if e
    ]
    for topic in dict.fromkeys(topics):
        flagged = [tag for tag in tags_of(topic) if tag in policy.tags]
        if flagged:
            reasons.append(f"the topic {topic} is tagged {', '.join(flagged)}")
    if policy.minors and any(
        suggests_minor(m.text)
        for m in detail.messages
        if m.case_id == case.id and m.author == case.author and not m.deleted_at
    ):
        reasons.append("the person may be under 18")
    return reasons
