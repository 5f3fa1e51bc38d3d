"""Stripe for tests: a real ``localstripe`` server (a subprocess) behind the fake in
``workers/fakes/stripe.py``, reached by the real ``stripe`` library.

localstripe keeps its objects in memory and sends its own signed webhooks; the fake adds
Checkout, the Customer Portal and Billing Meter events. Each test gets a fresh fake; the
localstripe process is shared by the session (its objects have random ids, so tests do not
see each other's).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx

from tests.support.processes import free_port
from workers.fakes.stripe import FakeStripe

STRIPE_SECRET_KEY = "sk_test_brik_tests"
WEBHOOK_SECRET = "whsec_brik_tests_signing_secret"
PRO_PRICE_ID = "price_brik_pro_monthly"
PRO_YEARLY_PRICE_ID = "price_brik_pro_yearly"
AUTH = {"Authorization": f"Bearer {STRIPE_SECRET_KEY}"}


@contextlib.contextmanager
def localstripe_process() -> Iterator[str]:
    """``python -m localstripe`` on a free port, from scratch; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/v1/customers", headers=AUTH, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("localstripe never answered")
            time.sleep(0.1)
        _create_pro_prices(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _create_pro_prices(url: str) -> None:
    """Pro at $49 a month or $490 a year (localstripe plans: Stripe takes plan ids as prices)."""
    for price_id, amount, interval in ((PRO_PRICE_ID, 4900, "month"),
                                       (PRO_YEARLY_PRICE_ID, 49000, "year")):  # fmt: skip
        response = httpx.post(
            f"{url}/v1/plans",
            headers=AUTH,
            data={"id": price_id, "amount": str(amount), "currency": "usd",
                  "interval": interval, "product[name]": "Brik Cloud Pro"},
        )  # fmt: skip
        response.raise_for_status()


async def register_webhook(fake: FakeStripe, url: str) -> None:
    """Point Stripe's webhooks (localstripe's and the fake's) at ``url``."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake.base_url}/_config/webhooks/brik",
            data={"url": url, "secret": WEBHOOK_SECRET},
        )
        response.raise_for_status()


async def stripe_request(fake: FakeStripe, method: str, path: str, **data: Any) -> (
    dict[str, Any]
):  # fmt: skip
    """A call to the Stripe API as the account holder (tests acting outside Brik)."""
    async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH) as http:
        form = {key: str(value) for key, value in data.items()} if data else None
        response = await http.request(method, path, data=form)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


async def stripe_post(fake: FakeStripe, path: str, **data: Any) -> dict[str, Any]:
    return await stripe_request(fake, "POST", path, **data)


async def stripe_get(fake: FakeStripe, path: str) -> dict[str, Any]:
    return await stripe_request(fake, "GET", path)


async def stripe_delete(fake: FakeStripe, path: str) -> dict[str, Any]:
    return await stripe_request(fake, "DELETE", path)


async def eventually(check: Any, within: float = 15.0) -> Any:
    """Poll the async ``check`` until it returns something truthy (webhooks take a moment)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)
