"""The registry finds every provider by name, and nothing it does not know falls back to FCM."""

from __future__ import annotations

import dataclasses

import pytest

from controlplane.models import Platform, ProviderName, TokenSlot
from controlplane.payloads import PushContent
from workers.providers import apns, fcm
from workers.providers.registry import LIVE, PROVIDERS, Registry, UnknownProvider
from workers.providers.sandbox import sandbox_of


def test_each_platform_has_one_live_provider_and_the_sandbox() -> None:
    for platform in Platform:
        live = PROVIDERS.for_platform(platform.value, test_mode=False)
        assert live.name in {name.value for name in ProviderName}  # its credential can be stored
        assert PROVIDERS.provider_for(platform.value, test_mode=True) == "sandbox"
    assert PROVIDERS.provider_for("ios", test_mode=False) == "apns"
    assert PROVIDERS.provider_for("android", test_mode=False) == "fcm"


def test_an_unknown_name_or_platform_is_an_error_that_says_so() -> None:
    with pytest.raises(UnknownProvider, match="no push provider is named 'hms'"):
        PROVIDERS["hms"]
    with pytest.raises(UnknownProvider, match="no push provider sends live pushes to web"):
        PROVIDERS.provider_for("web", test_mode=False)


def test_every_live_provider_can_send_every_kind_of_push_today() -> None:
    kinds = set(PushContent.model_fields["kind"].annotation.__args__)  # type: ignore[union-attr]
    for kind in LIVE:
        assert kind.kinds == kinds, kind.name
    assert PROVIDERS["sandbox"].kinds == kinds


def test_two_providers_for_one_platform_are_refused_when_the_registry_is_built() -> None:
    with pytest.raises(ValueError, match="two providers are named 'apns'"):
        Registry([apns.APNS, apns.APNS])
    other_ios = dataclasses.replace(fcm.FCM, name="other", platforms=frozenset({"ios"}))
    with pytest.raises(ValueError, match="apns and other both send to ios devices"):
        Registry([apns.APNS, other_ios])
    Registry([apns.APNS, fcm.FCM, sandbox_of([apns.APNS, fcm.FCM])])  # what ships is consistent


def test_sizes_are_measured_on_every_wire_that_can_carry_the_push() -> None:
    content = PushContent.model_validate({"kind": "background", "data": {"blob": "x" * 100}})
    sizes = {wire.provider: wire for wire in PROVIDERS.wire_sizes(content)}
    assert set(sizes) == {"APNs", "FCM"}  # the sandbox has no wire of its own
    assert sizes["APNs"].size == apns.encoded_size(content)
    assert sizes["FCM"].size == fcm.encoded_size(content)
    assert {wire.limit for wire in sizes.values()} == {4096}


def test_the_sandbox_and_the_api_send_to_the_token_the_live_provider_names() -> None:
    widget = PushContent.model_validate({"kind": "widget", "widget": {"kind": "OrderWidget"}})
    assert PROVIDERS["sandbox"].token_slot(widget, "ios") is TokenSlot.WIDGET
    assert PROVIDERS["sandbox"].token_slot(widget, "android") is TokenSlot.DEVICE
    assert PROVIDERS.token_slot(widget, "ios") is TokenSlot.WIDGET  # what the API asks
    assert PROVIDERS.token_slot(widget, "android") is TokenSlot.DEVICE


def test_the_providers_declare_which_token_an_activity_addressed_by_id_goes_to() -> None:
    """The worker asks, never decides: on iOS an update or end of an activity Brik addresses
    by id goes to that activity's own token on the device, on Android to the device's token;
    a provider for another platform declares its own."""

    def live(event: str, **brik: str) -> PushContent:
        fields = {"event": event, "content_state": {"eta": 5}, **brik}
        if event == "start":
            fields |= {"attributes_type": "OrderAttributes", "attributes": {}}
        return PushContent.model_validate({"kind": "liveactivity", "live_activity": fields})

    by_id = [live("update", activity_id="act_1"), live("end", activity_id="act_1")]
    for content in by_id:
        assert PROVIDERS["apns"].token_slot(content, "ios") is TokenSlot.ACTIVITY
        assert PROVIDERS["sandbox"].token_slot(content, "ios") is TokenSlot.ACTIVITY
        assert PROVIDERS["fcm"].token_slot(content, "android") is TokenSlot.DEVICE
        assert PROVIDERS["sandbox"].token_slot(content, "android") is TokenSlot.DEVICE
    started = live("start", activity_id="act_1")
    assert PROVIDERS.token_slot(started, "ios") is TokenSlot.PUSH_TO_START
    assert PROVIDERS.token_slot(started, "android") is TokenSlot.DEVICE
    # Sent to devices (POST /v1/pushes), not by id: the device's one Live Activity token.
    assert PROVIDERS.token_slot(live("update"), "ios") is TokenSlot.LIVE_ACTIVITY

    def own_activity_tokens(content: PushContent, platform: str) -> TokenSlot:
        return TokenSlot.ACTIVITY

    web = dataclasses.replace(
        fcm.FCM, name="web", platforms=frozenset({"web"}), tokens=own_activity_tokens
    )
    registry = Registry([apns.APNS, fcm.FCM, web, sandbox_of([apns.APNS, fcm.FCM, web])])
    assert registry["web"].token_slot(by_id[0], "web") is TokenSlot.ACTIVITY
    assert registry["sandbox"].token_slot(by_id[0], "web") is TokenSlot.ACTIVITY
