"""Form fields read into what operations take: a JSON field is JSON by the API's own rules."""

from __future__ import annotations

import gc

import httpx
import pytest
from starlette.datastructures import FormData

from controlplane.dashboard.forms import json_object
from controlplane.errors import InvalidRequest
from controlplane.models import Role
from tests.dashboard.test_isolation import sign_in
from tests.support.tenants import make_tenant

DEEP = "[" * 5000 + "]" * 5000  # Python's json recurses once per level: past ~1000, a crash


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (DEEP, "at most 64 levels"),
        ("[" * 65 + "]" * 65, "at most 64 levels"),  # what the API refuses, short of a crash
        ('{"eta": NaN}', "NaN is not a JSON number"),
        ("1e999", "out of range"),
        ('{"eta": ', "Expecting value"),
    ],
)
def test_a_json_field_is_refused_as_the_api_refuses_a_body(raw: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        json_object(FormData([("content_state", raw)]), "content_state")
    assert refused.value.param == "content_state"
    assert refused.value.message.startswith("content_state: not valid JSON")
    assert reason in refused.value.message


def test_a_json_field_within_the_rules_is_read() -> None:
    nested = "[" * 64 + "]" * 64
    assert json_object(FormData([("data", nested)]), "data") is not None
    assert json_object(FormData([("data", ' {"eta": 5} ')]), "data") == {"eta": 5}
    assert json_object(FormData([("data", "  ")]), "data") is None


@pytest.mark.database
async def test_every_json_field_nested_thousands_deep_is_a_400_beside_it(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Deep Co", roles=(Role.OWNER,))
    project = f"/dashboard/projects/{tenant.project.id}/test"
    forms = {
        "/compose": {"kind": "alert", "alert.title": "Hi", "data": DEEP, "to.user_ids": "u"},
        "/widgets": {"kind": "score", "data": DEEP, "user_ids": "u"},
        "/state": {"key": "order:1", "value": DEEP},
        "/credentials/fcm": {"service_account": DEEP},
    }
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in(me, tenant.owner)
        for path, form in forms.items():
            answer = await me.post(project + path, data=form)
            assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
            assert answer.headers["content-type"].startswith("text/html")
            assert "at most 64 levels" in answer.text, path


@pytest.mark.database
async def test_files_sent_with_a_form_are_closed_once_the_page_has_answered(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Upload Co", roles=(Role.OWNER,))
    upload = f"/dashboard/projects/{tenant.project.id}/test/credentials/apns"
    files = {"key_file": ("AuthKey.p8", b"not a key"), "other": ("notes.txt", b"x")}
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in(me, tenant.owner)
        answer = await me.post(upload, data={"key_id": "ABC123DEFG"}, files=files)
        signing_in = await me.post("/dashboard/sign-in", files={"other": ("a.txt", b"x")})
    assert answer.status_code == 400
    assert signing_in.status_code in (400, 401)
    # An upload left open is closed by the garbage collector, with a ResourceWarning (an error
    # here): each request kept its files' descriptors and buffers until then.
    gc.collect()
