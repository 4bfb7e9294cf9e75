"""API keys at the door: no key, a wrong one, a revoked one, one in the wrong place or without
the scope are each a clear 401 or 403, and what holds no one's data stays public."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from calcstream.client import Client, NotAllowed
from core.keys import read_keys, revoke, split, write_keys
from producer_api.__main__ import OpenRefused, is_loopback, refuse_open
from producer_api.auth import is_public
from producer_api.settings import ApiSettings
from tests.producer_api.tenants import Keyed, keyed_stack
from tests.waiting import eventually, until

BODY = {"op": "l2_norm", "data": [3.0, 4.0]}


@pytest.fixture(scope="module")
def keyed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    with keyed_stack(kafka_bootstrap, tmp_path_factory.mktemp("keys")) as stack:
        yield stack


@pytest.fixture
async def http(keyed: Keyed) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=keyed.api.base_url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused(response: httpx.Response, status: int, code: str, says: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_no_key_is_a_401_that_says_how(http: httpx.AsyncClient) -> None:
    for method, path in (("POST", "/v1/calculations"), ("POST", "/v1/calculations/batch"),
                         ("GET", "/v1/calculations/x"), ("GET", "/v1/stats"),
                         ("GET", "/metrics")):
        refused(await http.request(method, path, json=BODY), 401, "unauthorized",
                "Authorization: Bearer")


async def test_wrong_malformed_and_revoked_keys_are_401(keyed: Keyed,
                                                        http: httpx.AsyncClient) -> None:
    good = keyed.keys["acme"]
    for header in ({"authorization": f"Bearer {good[:-2]}xx"},  # right id, wrong secret
                   {"authorization": "Bearer csk_000000000000_" + "a" * 43},
                   {"authorization": "Bearer not-a-key"},
                   bearer(keyed.keys["revoked"])):
        refused(await http.post("/v1/calculations", json=BODY, headers=header), 401,
                "unauthorized", "not valid")
    refused(await http.post("/v1/calculations", json=BODY,
                            headers={"authorization": f"Basic {good}"}),
            401, "unauthorized", "Bearer")
    refused(await http.post("/v1/calculations", json=BODY, headers={"authorization": good}),
            401, "unauthorized", "Bearer")


async def test_a_key_in_the_url_is_refused_even_with_the_header(keyed: Keyed,
                                                                http: httpx.AsyncClient) -> None:
    good = keyed.keys["acme"]
    for name in ("api_key", "key", "token", "access_token"):
        response = await http.post("/v1/calculations", params={name: good}, json=BODY,
                                   headers=bearer(good))
        refused(response, 401, "unauthorized", "never in the URL")


async def test_a_key_without_the_scope_is_a_403_naming_it(keyed: Keyed,
                                                          http: httpx.AsyncClient) -> None:
    submit_only = bearer(keyed.keys["acme-submit"])
    accepted = await http.post("/v1/calculations", json=BODY, headers=submit_only)
    assert accepted.status_code == 202
    refused(await http.get(f"/v1/calculations/{accepted.json()['id']}", headers=submit_only),
            403, "forbidden", "'read'")
    for path in ("/v1/stats", "/metrics"):
        refused(await http.get(path, headers=bearer(keyed.keys["acme"])), 403, "forbidden",
                "'admin'")
        assert (await http.get(path, headers=bearer(keyed.keys["admin"]))).status_code == 200


async def test_what_holds_no_data_is_public(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/v1/ops", "/v1/asyncapi.json",
                 "/v1/limits", "/docs", "/redoc", "/dashboard", "/dashboard/dashboard.js"):
        assert (await http.get(path)).status_code == 200, path


async def test_every_other_operation_needs_a_key(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            concrete = path.replace("{request_id}", "some-id")
            if is_public(concrete):
                continue
            response = await http.request(method.upper(), concrete, json=BODY)
            assert response.status_code == 401, (method, path, response.text)
            checked += 1
    assert checked >= 5


async def test_a_revoked_key_stops_working_without_a_restart(keyed: Keyed,
                                                             http: httpx.AsyncClient) -> None:
    token = keyed.add("acme", "submit,read")
    headers = bearer(token)

    def answers(expected: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            response = await http.post("/v1/calculations", json=BODY, headers=headers)
            return response.status_code == expected
        return check

    await eventually(answers(202), what="the new key accepted")  # within keys_refresh_s
    write_keys(keyed.keys_file, revoke(read_keys(keyed.keys_file), token[4:16]))
    await eventually(answers(401), what="the revoked key refused")


async def test_a_websocket_authenticates_with_its_first_message(keyed: Keyed) -> None:
    async with connect(keyed.api.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "auth", "key": keyed.keys["acme"], "ref": 1}).decode())
        hello = orjson.loads(await ws.recv())
        assert hello == {"type": "authenticated", "tenant": "acme",
                         "scopes": ["read", "submit"], "ref": 1}


async def test_a_websocket_that_does_not_authenticate_is_told_and_closed(keyed: Keyed) -> None:
    async with connect(keyed.api.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
        error = orjson.loads(await ws.recv())
        assert error["error"]["code"] == "unauthorized"
        assert "authenticate first" in error["error"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with connect(keyed.api.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "auth", "key": keyed.keys["revoked"]}).decode())
        assert orjson.loads(await ws.recv())["error"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    async with connect(keyed.api.ws_url) as ws:  # silent: closed after ws_auth_timeout_s
        error = orjson.loads(await ws.recv())
        assert "not authenticated within" in error["error"]["message"]
        with pytest.raises(ConnectionClosed):
            await ws.recv()


async def test_a_websocket_with_a_wrong_key_in_its_header_is_refused(keyed: Keyed) -> None:
    async with connect(keyed.api.ws_url,
                       additional_headers=bearer(keyed.keys["revoked"])) as refused_:
        error = orjson.loads(await refused_.recv())["error"]
        assert error["code"] == "unauthorized" and "not valid" in error["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await refused_.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with connect(keyed.api.ws_url, additional_headers=bearer(keyed.keys["acme"])) as ws:
        await ws.send(orjson.dumps({"type": "subscribe", "ids": ["x"]}).decode())
        assert orjson.loads(await ws.recv()) == {"type": "subscribed", "ids": ["x"]}


def test_without_keys_it_serves_loopback_only_unless_told(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    refuse_open(ApiSettings(), "127.0.0.1")
    refuse_open(ApiSettings(api_open=True), "0.0.0.0")
    refuse_open(ApiSettings(api_keys_file=tmp_path / "keys.json"), "0.0.0.0")
    with pytest.raises(OpenRefused, match="CALCSTREAM_API_OPEN"):
        refuse_open(ApiSettings(), "0.0.0.0")
    done = subprocess.run([sys.executable, "-m", "producer_api", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "not a loopback address" in done.stderr and "calcstream keys create" in done.stderr


async def test_the_python_client_sends_its_key(keyed: Keyed) -> None:
    async with Client(keyed.api.base_url, api_key=keyed.keys["acme"]) as client:
        result = await client.compute("l2_norm", [3.0, 4.0], timeout=20)
        assert result.result == 5.0
    async with Client(keyed.api.base_url, retries=0) as client:
        with pytest.raises(NotAllowed) as refused_:
            await client.submit("l2_norm", [3.0, 4.0])
        assert refused_.value.status == 401


async def test_no_key_reaches_a_log_line(keyed: Keyed, http: httpx.AsyncClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    good = keyed.keys["acme"]
    with caplog.at_level(logging.DEBUG):
        await http.post("/v1/calculations", json=BODY, headers=bearer(good))
        await http.post("/v1/calculations", json=BODY, headers=bearer(good[:-3] + "xyz"))
        await http.post("/v1/calculations", params={"api_key": good}, json=BODY)
        async with connect(keyed.api.ws_url) as ws:
            await ws.send(orjson.dumps({"type": "auth", "key": good[:-1]}).decode())
            await ws.recv()

        def ours() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.name.split(".")[0] in ("uvicorn", "producer_api", "core")]

        # The access line is written after the answer: wait for it, then read it.
        await until(lambda: any("api_key=csk_" in line for line in ours()),
                    what="the access log line of the key in the URL")
    parts = split(good)
    assert parts is not None
    secret = parts[1]
    assert not [line for line in ours() if secret[:12] in line or secret[-12:-1] in line]
