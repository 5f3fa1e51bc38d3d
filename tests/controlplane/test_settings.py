from __future__ import annotations

import pytest
from pydantic import ValidationError

from controlplane.settings import GOOGLE_FCM_BASE_URL, GOOGLE_TOKEN_URL, Settings


def test_settings_come_from_brik_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIK_DATABASE_URL", "postgres://u@db:5432/brik")
    monkeypatch.setenv("BRIK_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("BRIK_ENCRYPTION_KEYS", "new-key, old-key")
    monkeypatch.setenv("BRIK_APNS_HOST", "127.0.0.1")
    monkeypatch.setenv("BRIK_APNS_PORT", "8443")
    monkeypatch.setenv("BRIK_MAX_BODY_BYTES", "4096")
    settings = Settings()
    assert settings.database_url == "postgres://u@db:5432/brik"
    assert settings.redis_url == "redis://cache:6379/2"
    assert [k.get_secret_value() for k in settings.encryption_keys] == ["new-key", "old-key"]
    assert (settings.apns_host, settings.apns_port) == ("127.0.0.1", 8443)
    assert settings.max_body_bytes == 4096


def test_provider_endpoints_default_to_the_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRIK_APNS_HOST", "BRIK_FCM_BASE_URL", "BRIK_FCM_TOKEN_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.apns_host is None  # chosen per credential: production or sandbox
    assert settings.fcm_base_url == GOOGLE_FCM_BASE_URL == "https://fcm.googleapis.com"
    assert settings.fcm_token_url == GOOGLE_TOKEN_URL == "https://oauth2.googleapis.com/token"


def test_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIK_APNS_PORT", "99999")
    with pytest.raises(ValidationError, match="apns_port"):
        Settings()


def test_a_missing_or_short_secret_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="BRIK_SECRET_KEY"):
        Settings(secret_key=None).require_secret_key()
    with pytest.raises(ValueError, match="at least 32"):
        Settings(secret_key="short").require_secret_key()  # type: ignore[arg-type]
    assert Settings(secret_key="k" * 32).require_secret_key() == "k" * 32  # type: ignore[arg-type]


def test_previous_secret_keys_are_read_comma_separated_after_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current, old, older = "c" * 32, "o" * 40, "p" * 32
    monkeypatch.setenv("BRIK_SECRET_KEY", current)
    monkeypatch.setenv("BRIK_PREVIOUS_SECRET_KEYS", f" {old} , {older},")
    assert Settings().require_secret_keys() == [current, old, older]
    monkeypatch.delenv("BRIK_PREVIOUS_SECRET_KEYS")
    assert Settings().require_secret_keys() == [current]
    # A previous key too short to have been a secret key is a typo, said at start-up.
    monkeypatch.setenv("BRIK_PREVIOUS_SECRET_KEYS", f"{old},short")
    with pytest.raises(ValueError, match="BRIK_PREVIOUS_SECRET_KEYS entry 2"):
        Settings().require_secret_keys()
