"""``brik.exports`` and ``brik.users`` against a real Brik Cloud: a project's archive asked for,
built by the worker and saved; one end user's data exported and erased, in both flavours."""

from __future__ import annotations

import asyncio
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import brik
import pytest

from tests.sdk.conftest import BrikServer

pytestmark = pytest.mark.usefixtures("environment")

PHONE = "7a" * 32


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    yield
    if brik._default is not None:
        brik._default.close()
        brik._default = None


def test_a_project_export_is_created_built_and_downloaded(tmp_path: Path) -> None:
    brik.init()
    brik.devices.register(token=PHONE, platform="ios", user_id="sdk-exported", tags=["beta"])
    brik.state.set("user:sdk-exported:plan", "gold")
    export = brik.exports.create()
    assert (export.status, export.download_url) == ("queued", None)
    deadline = time.monotonic() + 60
    while export.status in ("queued", "running"):
        assert time.monotonic() < deadline, export
        time.sleep(0.1)
        export = brik.exports.retrieve(export.id)
    assert export.status == "succeeded", export.error
    assert (export.counts["devices"], export.counts["state"]) == (1, 1)
    saved = brik.exports.download(export.id, tmp_path / "project.tar.gz")
    with tarfile.open(saved, "r:gz") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        devices = archive.extractfile("devices.ndjson").read().decode()  # type: ignore[union-attr]
    assert manifest["counts"] == export.counts
    assert json.loads(devices)["token"] == PHONE
    assert [e.id for e in brik.exports.list().data] == [export.id]
    assert brik.exports.delete(export.id).status == "expired"  # the archive is gone now
    with pytest.raises(brik.InvalidRequestError) as bad:
        brik.exports.retrieve("../pushes")
    assert bad.value.param == "export_id"


def test_an_end_user_is_exported_then_erased_and_erasing_again_finds_nothing() -> None:
    brik.init()
    brik.devices.register(token=PHONE, platform="ios", user_id="sdk user 1?")
    mine = brik.users.export("sdk user 1?")  # a space and a '?' travel percent-encoded
    assert isinstance(mine, brik.UserExport)
    assert [d["token"] for d in mine.devices] == [PHONE]
    erased = brik.users.erase("sdk user 1?")
    assert isinstance(erased, brik.UserErasure)
    assert erased.erased["devices"] == 1
    assert set(brik.users.erase("sdk user 1?").erased.values()) == {0}
    assert brik.users.export("sdk user 1?").devices == []
    with pytest.raises(brik.InvalidRequestError) as bad:
        brik.users.export("a/b")
    assert bad.value.param == "user_id"


async def test_the_async_client_exports_and_erases_too(
    brik_server: BrikServer, keys: dict[str, str], tmp_path: Path
) -> None:
    async with brik.AsyncClient(keys["test_secret"], base_url=brik_server.url) as client:
        await client.devices.register(token=PHONE, platform="ios", user_id="async-user")
        export = await client.exports.create()
        deadline = time.monotonic() + 60
        while export.status in ("queued", "running"):
            assert time.monotonic() < deadline, export
            await asyncio.sleep(0.1)
            export = await client.exports.retrieve(export.id)
        saved = await client.exports.download(export.id, tmp_path / "async.tar.gz")
        assert saved.stat().st_size == export.size_bytes
        assert (await client.exports.delete(export.id)).download_url is None
        assert [d["user_id"] for d in (await client.users.export("async-user")).devices] == [
            "async-user"
        ]
        assert (await client.users.erase("async-user")).erased["devices"] == 1
