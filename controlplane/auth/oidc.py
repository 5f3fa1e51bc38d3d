"""Sign-in with any OpenID Connect provider, through authlib's Starlette client.

Configured by ``BRIK_OIDC_ISSUER`` / ``BRIK_OIDC_CLIENT_ID`` / ``BRIK_OIDC_CLIENT_SECRET``.
The flow is the authorization-code flow with PKCE (S256) and a nonce; authlib fetches the
provider's discovery document and JWKS and verifies the ID token's signature, issuer,
audience, expiry and nonce (with joserfc). We then require a *verified* email and match the
user by it, creating an account on first sign-in when ``BRIK_OIDC_ALLOW_SIGNUP`` is on.

authlib keeps the state, nonce and PKCE verifier between the two legs in ``request.session``,
which the app provides with Starlette's signed-cookie ``SessionMiddleware`` (cookie
``brik_oidc``, ten minutes) only when OIDC is configured. It is not the admin session. Its
signature verifies under ``BRIK_SECRET_KEY`` or a previous key (:class:`OidcStateMiddleware`),
so a sign-in that began just before a secret-key rotation still finishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import itsdangerous
from authlib.integrations.starlette_client import OAuth, OAuthError, StarletteOAuth2App
from httpx2 import HTTPError
from joserfc.errors import JoseError
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from controlplane.errors import InvalidRequest
from controlplane.settings import Settings

STATE_COOKIE = "brik_oidc"
CALLBACK_PATH = "/v1/auth/oidc/callback"


class OidcStateMiddleware(SessionMiddleware):
    """Starlette's signed-cookie sessions, signing with the first of ``secret_keys`` (the
    current secret key) and verifying with any of them (the previous ones too)."""

    def __init__(
        self,
        app: ASGIApp,
        secret_keys: Sequence[str],
        session_cookie: str,
        max_age: int,
        same_site: Literal["lax", "strict", "none"],
        https_only: bool,
    ) -> None:
        super().__init__(
            app, secret_keys[0], session_cookie, max_age, same_site=same_site, https_only=https_only
        )
        # itsdangerous signs with the last key of its list and verifies with every one.
        self.signer = itsdangerous.TimestampSigner(list(reversed(secret_keys)))


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    email: str
    name: str
    subject: str


class OidcLogin:
    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer
        assert settings.oidc_client_id
        secret = settings.oidc_client_secret
        oauth = OAuth()
        client = oauth.register(
            name="brik",
            client_id=settings.oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            server_metadata_url=(
                settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            ),
            client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
        )
        assert isinstance(client, StarletteOAuth2App)
        self._client = client
        self._redirect_uri = settings.public_base_url.rstrip("/") + CALLBACK_PATH
        self.provider_name = settings.oidc_provider_name

    async def redirect(self, request: Request) -> Response:
        try:
            response: Response = await self._client.authorize_redirect(request, self._redirect_uri)
        except (OAuthError, HTTPError, RuntimeError, ValueError) as exc:
            raise InvalidRequest(
                f"The sign-in provider could not be reached: {exc}",
                code="oidc_unavailable",
                status_code=502,
            ) from None
        return response

    async def identity(self, request: Request) -> VerifiedIdentity:
        """The caller's verified identity from the provider's answer, or 400 saying why."""
        try:
            token: dict[str, Any] = await self._client.authorize_access_token(request)
        except OAuthError as exc:
            raise InvalidRequest(
                f"Sign-in was not completed: {exc.error or exc.description}", code="oidc_failed"
            ) from None
        except (JoseError, HTTPError, ValueError, KeyError, TypeError) as exc:
            # joserfc refuses bad signatures and claims with JoseError subclasses.
            raise InvalidRequest(
                f"The provider's answer was refused: {type(exc).__name__}", code="oidc_failed"
            ) from None
        claims = token.get("userinfo") or {}
        email = str(claims.get("email") or "").strip().lower()
        if not email or claims.get("email_verified") is not True:
            raise InvalidRequest(
                "The provider did not vouch for a verified email address.",
                code="oidc_email_unverified",
            )
        return VerifiedIdentity(
            email=email, name=str(claims.get("name") or ""), subject=str(claims.get("sub", ""))
        )
