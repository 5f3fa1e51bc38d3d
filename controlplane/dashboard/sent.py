"""What a page says after a form sent a push (an activity's update or end, a widget reload).

The form's answer is a 303 redirect, so a reload does not post it again; the redirect carries
codes, a count and the push's id — never text, so no link can make the dashboard say words of
its choosing — and the page reads them back into a notice: what was done, how many devices it
goes to, why some get nothing (the API's ``warnings`` codes), and where to follow the push.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from controlplane.models.ids import is_well_formed_id

# The API's warning codes (``ActivitySent.warnings``, ``PushSent.warnings``), said for a person.
WARNINGS = {
    "no_recipients": "No device can receive it now.",
    "token_pending": "Devices whose app has not reported the activity's token yet were skipped.",
    "token_invalid": "Devices where Apple refused the activity's token were skipped.",
    "device_invalid": "Devices a provider refused were skipped.",
    "no_push_to_start_token": "iOS devices without a push-to-start token (iOS 17.2+) were skipped.",
    "no_live_activity_token": "iOS devices without a Live Activity token were skipped.",
    "no_widget_push_token": "iOS devices without a widget push token (iOS 26+) were skipped.",
}


@dataclass(frozen=True)
class SentNotice:
    text: str
    push_id: str | None = None
    recipients: int | None = None
    warnings: list[str] = field(default_factory=list)


def sent_query(
    notice: str, *, push_id: str | None, recipients: int, warnings: Iterable[str]
) -> str:
    """The query string of the redirect after ``notice`` (a code) sent ``push_id``."""
    values = {"notice": notice, "recipients": str(recipients)}
    if push_id is not None:
        values["push"] = push_id
    codes = [code for code in warnings if code in WARNINGS]
    if codes:
        values["warn"] = ",".join(codes)
    return urlencode(values)


def read_sent(query: Mapping[str, str], notices: Mapping[str, str]) -> SentNotice | None:
    """The notice a redirect's query names (``notices``: code → text), or None. Anything not a
    known code, a count or an id is dropped."""
    text = notices.get(query.get("notice", ""))
    if text is None:
        return None
    push_id = query.get("push")
    count = query.get("recipients", "")
    return SentNotice(
        text=text,
        push_id=push_id if push_id and is_well_formed_id(push_id) else None,
        recipients=int(count) if count.isascii() and count.isdigit() and len(count) < 10 else None,
        warnings=[WARNINGS[code] for code in query.get("warn", "").split(",") if code in WARNINGS],
    )
