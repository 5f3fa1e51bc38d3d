"""Push content: what the API accepts, and the 4 KB limits checked at accept time against
every provider's wire (each provider's spelling is tested with it, tests/workers/providers/)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.errors import InvalidRequest
from controlplane.payloads import PushContent, check_sizes
from workers.providers.registry import PROVIDERS


def content(**fields: Any) -> PushContent:
    return PushContent.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "alert"},
        {"kind": "alert", "alert": {}},
        {"kind": "liveactivity"},
        {"kind": "liveactivity", "live_activity": {"event": "start", "content_state": {}}},
        {"kind": "liveactivity", "live_activity": {"event": "update", "content_state": {},
                                                   "attributes": {}}},
        {"kind": "background", "alert": {"title": "x"}},
        {"kind": "alert", "alert": {"title": "x"}, "data": {"aps": 1}},
        {"kind": "alert", "alert": {"title": "x"}, "ttl": -1},
        {"kind": "telegram"},
    ],
)  # fmt: skip
def test_content_that_cannot_be_sent_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PushContent.model_validate(fields)


def test_the_4kb_limit_is_checked_for_both_providers() -> None:
    check_sizes(content(kind="background", data={"blob": "x" * 3900}), PROVIDERS)
    with pytest.raises(InvalidRequest) as error:
        check_sizes(content(kind="background", data={"blob": "x" * 4100}), PROVIDERS)
    assert error.value.code == "payload_too_large"
    assert "as APNs would receive it" in error.value.message
    # Non-string data grows as FCM strings (JSON-encoded): still checked.
    with pytest.raises(InvalidRequest) as error:
        check_sizes(content(kind="background", data={"list": ['"'] * 600}), PROVIDERS)
    assert "as FCM would receive it" in error.value.message
