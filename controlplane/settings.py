"""The one settings object, read from ``BRIK_*`` environment variables.

Nothing reads the environment at import time: processes build a :class:`Settings` when they
start (``Settings()``) and hand it down. Every field is documented in the
configuration table, docs/configuration.md (a test compares the two).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

APPLE_PRODUCTION_HOST = "api.push.apple.com"
APPLE_SANDBOX_HOST = "api.sandbox.push.apple.com"
GOOGLE_FCM_BASE_URL = "https://fcm.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
SECRET_KEY_MIN = 32  # characters of BRIK_SECRET_KEY (and of each previous one)
# How late an analytics event may arrive (controlplane/analytics/events.py); retention of raw
# events may not be shorter, or a late retry would be counted again.
MAX_EVENT_AGE_DAYS = 7


class Settings(BaseSettings):
    """Configuration of the API and worker processes."""

    model_config = SettingsConfigDict(env_prefix="BRIK_", extra="ignore")

    database_url: str = "postgres://postgres@127.0.0.1:5432/brik"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs sessions and peppers API-key hashes. Required by `serve` and `worker`.",
    )
    previous_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Other secret keys, comma separated, that still verify what they hashed or "
        "signed but never write: the ones being retired (rotation, docs/operations.md).",
    )
    encryption_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Fernet keys, newest first, comma separated; the first encrypts.",
    )
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Admin sign-in; see docs/accounts.md, "Signing in".
    session_lifetime_hours: int = Field(default=168, ge=1)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=50, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    invitation_lifetime_hours: int = Field(default=72, ge=1)
    oidc_issuer: str | None = Field(
        default=None, description="OpenID provider issuer URL; enables 'Sign in with …'."
    )
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    oidc_provider_name: str = "OpenID Connect"
    oidc_allow_signup: bool = Field(
        default=True, description="Create an account for a verified email seen the first time."
    )
    mail_sender: str | None = Field(
        default=None,
        description="'smtp' or 'module:Class' of a MailSender implementation; unset, nothing "
        "is mailed. 'log' (messages, invitation links included, to the log) is for "
        "`brik-cloud dev`, its default; `serve` refuses it.",
    )
    mail_from: str = Field(
        default="Brik Cloud <noreply@localhost>", description="From: of every email sent."
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://host:25, smtp+starttls://user:password@host:587 or "
        "smtps://user:password@host:465 (BRIK_MAIL_SENDER=smtp).",
    )
    smtp_ca_file: Path | None = Field(
        default=None, description="Trust this CA for the SMTP server (default: the system's)."
    )
    smtp_timeout_seconds: float = Field(default=15.0, gt=0)

    # Provider endpoints. None means Apple's and Google's real hosts.
    apns_host: str | None = None
    apns_port: int = Field(default=443, ge=1, le=65535)
    apns_ca_file: Path | None = None
    # Apple's channel management API (broadcast channels) is a host of its own; None: Apple's.
    apns_channels_host: str | None = None
    apns_channels_port: int | None = Field(default=None, ge=1, le=65535)
    fcm_base_url: str = GOOGLE_FCM_BASE_URL
    fcm_token_url: str = GOOGLE_TOKEN_URL
    fcm_in_flight: int = Field(
        default=500, ge=1,
        description="Requests to FCM one worker may have waiting for an answer, per project "
        "(each on a keep-alive connection of its own).",
    )  # fmt: skip

    # Worker tuning; see docs/delivery.md, "Worker tuning".
    worker_max_jobs: int = Field(default=200, ge=1)
    worker_poll_delay: float = Field(default=0.05, gt=0)
    worker_job_timeout: float = Field(default=120.0, gt=0)
    worker_max_tries: int = Field(default=8, ge=1)
    queue_name: str = "brik:queue"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Delivery; see docs/delivery.md.
    delivery_retry_budget_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Temporary failures of a push without a ttl are retried this long after it "
        "became due (with a ttl: until it expires).",
    )
    delivery_max_attempts: int = Field(
        default=200, ge=1, le=10_000, description="Safety valve only: attempts per delivery."
    )
    delivery_retry_base_seconds: float = Field(default=2.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=300.0, gt=0)
    delivery_lease_seconds: float = Field(default=180.0, gt=0)
    delivery_in_flight_per_connection: int = Field(default=500, ge=1)
    egress_rate_per_second: float = Field(
        default=1000.0, ge=0, description="Per project and provider; 0 turns the limit off."
    )
    egress_burst: int = Field(default=2000, ge=1)
    device_pushes_per_minute: int = Field(
        default=0, ge=0, description="Cap on pushes to one device per minute; 0 means no cap."
    )
    reconcile_every_seconds: int = Field(default=60, ge=1, le=60)
    reconcile_grace_seconds: float = Field(default=60.0, gt=0)

    # Push event streams (GET /v1/pushes/{id}/events); see docs/api.md, "Reading a push".
    event_streams_per_project: int = Field(
        default=100, ge=1, description="Open event streams one project may hold per API process."
    )
    event_streams_per_process: int = Field(
        default=1000, ge=1, description="Open event streams one API process holds at most."
    )
    event_stream_max_seconds: float = Field(
        default=900.0, gt=0, description="A stream is closed after this long; clients reconnect."
    )
    event_stream_poll_seconds: float = Field(
        default=5.0, gt=0, description="A stream re-reads its push this often without a notice."
    )

    # Realtime channels (GET /v1/realtime/channels/{channel}); see docs/realtime.md.
    realtime_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="A comment line goes down every open stream this often."
    )
    realtime_max_seconds: float = Field(
        default=3600.0, gt=0,
        description="A stream is closed after this long; clients reconnect with Last-Event-ID.",
    )  # fmt: skip
    realtime_history_messages: int = Field(
        default=100, ge=1, description="Messages kept per channel for Last-Event-ID resume."
    )
    realtime_history_seconds: int = Field(
        default=3600, ge=1, description="How long a channel's messages stay resumable."
    )
    realtime_max_message_bytes: int = Field(
        default=32 * 1024, ge=1024, le=1024 * 1024,
        description="Largest message `data` (compact JSON, UTF-8) a publish takes.",
    )  # fmt: skip

    # Outbound webhooks; see docs/webhooks.md.
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="Let webhooks reach private, loopback, link-local and other non-public "
        "addresses (an install whose receivers live on its own network).",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="One webhook request, connect to last byte read."
    )
    webhook_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A delivery a worker took and never recorded is taken "
        "again after this long (a worker killed mid-send); longer than the timeout.",
    )
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=4 * 3600.0, gt=0)
    webhook_retry_budget_seconds: float = Field(
        default=3 * 24 * 3600.0, gt=0, description="A failing delivery is retried this long."
    )
    webhook_disable_after_seconds: float = Field(
        default=3 * 24 * 3600.0, ge=0,
        description="An endpoint failing every attempt for this long (and at least "
        "BRIK_WEBHOOK_DISABLE_AFTER_FAILURES times in a row) is disabled.",
    )  # fmt: skip
    webhook_disable_after_failures: int = Field(default=10, ge=1)
    webhook_dispatch_every_seconds: int = Field(default=1, ge=1, le=60)

    # Project exports; see docs/export.md.
    export_dir: Path = Field(
        default=Path(".brik/exports"),
        description="Where export archives are written (worker) and read (API): in production a "
        "volume both reach; `dev` uses its own directory's exports/.",
    )
    export_lifetime_hours: int = Field(
        default=24, ge=1, le=24 * 30,
        description="An archive can be downloaded this long, then it is deleted.",
    )  # fmt: skip
    export_lease_seconds: float = Field(
        default=120.0, gt=0,
        description="An export a worker stopped renewing (killed mid-export) is built again "
        "after this long.",
    )  # fmt: skip

    # Plans and their limits; see docs/billing.md and docs/api.md.
    # Quotas are per organization and calendar month (UTC); "unlimited" is -1.
    plan_free_pushes_per_month: int = Field(default=10_000, ge=-1)
    plan_free_state_bytes: int = Field(default=1_000_000_000, ge=-1)
    plan_free_requests_per_second: float = Field(default=50.0, gt=0)
    plan_pro_pushes_per_month: int = Field(default=100_000, ge=-1)
    plan_pro_state_bytes: int = Field(default=10_000_000_000, ge=-1)
    plan_pro_requests_per_second: float = Field(default=500.0, gt=0)
    plan_pro_overage: bool = Field(
        default=False, description="Pro may send past its quota, billed as metered overage."
    )
    plan_enterprise_pushes_per_month: int = Field(default=-1, ge=-1)
    plan_enterprise_state_bytes: int = Field(default=-1, ge=-1)
    plan_enterprise_requests_per_second: float = Field(default=5000.0, gt=0)
    # Days raw analytics events are kept (docs/analytics.md, "Retention"); -1 keeps them.
    # At least 7: an event may arrive up to 7 days late and must still find its first copy.
    plan_free_analytics_retention_days: int = Field(default=7, ge=-1)
    plan_pro_analytics_retention_days: int = Field(default=90, ge=-1)
    plan_enterprise_analytics_retention_days: int = Field(default=365, ge=-1)
    # Open realtime streams (SSE) per project, across every API process; -1: no limit.
    plan_free_realtime_connections: int = Field(default=100, ge=-1)
    plan_pro_realtime_connections: int = Field(default=10_000, ge=-1)
    plan_enterprise_realtime_connections: int = Field(default=-1, ge=-1)
    rate_limit_burst_seconds: float = Field(
        default=2.0, gt=0, description="A bucket holds this many seconds of its rate."
    )

    # Analytics ingestion; see docs/analytics.md, "How events are loaded".
    analytics_buffer_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Events waiting in Redis to be loaded, at most (JSON bytes); past it "
        "POST /v1/events answers 503 until workers catch up.",
    )
    analytics_load_every_seconds: int = Field(default=5, ge=1, le=60)
    analytics_claim_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A batch a worker took but has not loaded within this is taken over by "
        "another (the first died).",
    )

    # Stripe billing, optional: with no secret key an admin sets plans and nothing is billed.
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret of the /webhooks/stripe endpoint (whsec_...)."
    )
    stripe_api_base: str | None = Field(
        default=None, description="Another Stripe API address (a local fake); unset: Stripe."
    )
    stripe_pro_price_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Stripe prices that pay for Pro (comma-separated, e.g. monthly,yearly); "
        "Checkout offers the first.",
    )
    stripe_overage_price_id: str | None = Field(
        default=None, description="The metered price billed per push past the Pro quota."
    )
    stripe_overage_meter_event: str = Field(
        default="brik_push_overage", description="event_name of the Stripe meter for overage."
    )
    billing_past_due_grace_seconds: int = Field(
        default=7 * 24 * 3600, ge=0, description="A past_due subscription keeps its plan this long."
    )

    @field_validator(
        "reconcile_every_seconds", "analytics_load_every_seconds", "webhook_dispatch_every_seconds"
    )
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
        return value

    @field_validator(
        "plan_free_analytics_retention_days",
        "plan_pro_analytics_retention_days",
        "plan_enterprise_analytics_retention_days",
    )
    @classmethod
    def _outlives_late_events(cls, value: int) -> int:
        if value != -1 and value < MAX_EVENT_AGE_DAYS:
            raise ValueError(
                f"must be -1 (keep) or at least {MAX_EVENT_AGE_DAYS}: events may arrive "
                f"{MAX_EVENT_AGE_DAYS} days late, and a retried one must find its first copy"
            )
        return value

    @field_validator(
        "encryption_keys", "previous_secret_keys", "stripe_pro_price_ids", mode="before"
    )
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def stripe_enabled(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` when the product is served over HTTPS."""
        return self.public_base_url.startswith("https://")

    def require_secret_key(self) -> str:
        """The secret key, or a clear error for production processes started without one."""
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < SECRET_KEY_MIN:
            raise ValueError(
                f"BRIK_SECRET_KEY must be set to at least {SECRET_KEY_MIN} random characters "
                '(for example: python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
        return self.secret_key.get_secret_value()

    def require_secret_keys(self) -> list[str]:
        """The secret key, then every previous one (see controlplane/auth/peppers.py)."""
        keys = [self.require_secret_key()]
        for position, key in enumerate(self.previous_secret_keys, start=1):
            if len(key.get_secret_value()) < SECRET_KEY_MIN:
                raise ValueError(
                    f"BRIK_PREVIOUS_SECRET_KEYS entry {position} is shorter than "
                    f"{SECRET_KEY_MIN} characters: it cannot be a secret key this server used"
                )
            keys.append(key.get_secret_value())
        return keys

    @model_validator(mode="after")
    def _lease_outlasts_a_request(self) -> Settings:
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError(
                "BRIK_WEBHOOK_LEASE_SECONDS must be longer than BRIK_WEBHOOK_TIMEOUT_SECONDS: "
                "a delivery still being sent would be taken again"
            )
        return self
