"""Attacks on an API with keys, each with the outcome it must get: the security table of
RELIABILITY.md (``make chaos``) and a test (``test_attacks.py``) run the same list.

Tenant bravo, an anonymous caller and keys that are wrong in every way try to see, change or
flood tenant acme's work. Each attack returns what it observed in a few words; it passes when
that is what was expected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.producer_api.tenants import Keyed

# The keyed stack these run on must have this rate quota (tenant_rate_per_s / _burst).
RATE, BURST = 0.1, 20  # one token per 10 s: the flood meets an empty bucket


@dataclass(frozen=True)
class Outcome:
    """One attack: what was tried, what must happen, what did."""

    attack: str
    expected: str
    observed: str

    @property
    def held(self) -> bool:
        """The defence held: what happened is what must."""
        return self.observed == self.expected


class _Attacks:
    def __init__(self, keyed: Keyed, http: httpx.AsyncClient) -> None:
        self.keyed = keyed
        self.http = http
        self.victim = f"victim-{uuid.uuid4().hex[:8]}"

    def key(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keyed.keys[name]}"}

    async def plant(self) -> None:
        """acme's request, computed, for the others to go after."""
        answer = await self.http.post("/v1/calculations", params={"wait": 20},
                                      headers=self.key("acme"),
                                      json={"id": self.victim, "op": "sum", "data": [1.0, 2.0]})
        assert answer.status_code == 200, answer.text

    async def acme_intact(self) -> bool:
        doc = (await self.http.get(f"/v1/calculations/{self.victim}",
                                   headers=self.key("acme"))).json()
        return bool(doc.get("result") == 3.0)

    async def status(self, method: str, path: str, **kw: Any) -> str:
        return str((await self.http.request(method, path, **kw)).status_code)

    async def no_key(self) -> str:
        return await self.status("POST", "/v1/calculations", json={"op": "sum", "data": [1]})

    async def wrong_key(self) -> str:
        token = self.keyed.keys["acme"]
        return await self.status("POST", "/v1/calculations", json={"op": "sum", "data": [1]},
                                 headers={"authorization": f"Bearer {token[:-4]}AAAA"})

    async def revoked_key(self) -> str:
        return await self.status("GET", f"/v1/calculations/{self.victim}",
                                 headers=self.key("revoked"))

    async def key_in_url(self) -> str:
        return await self.status("GET", f"/v1/calculations/{self.victim}",
                                 params={"api_key": self.keyed.keys["acme"]})

    async def wrong_scope(self) -> str:
        return await self.status("GET", f"/v1/calculations/{self.victim}",
                                 headers=self.key("acme-submit"))

    async def read_by_id(self) -> str:
        return await self.status("GET", f"/v1/calculations/{self.victim}",
                                 headers=self.key("bravo"))

    async def wait_on_its_id(self) -> str:
        answer = await self.http.post("/v1/calculations", params={"wait": 20},
                                      headers=self.key("bravo"),
                                      json={"id": self.victim, "op": "sum", "data": [5.0]})
        own = answer.json().get("result") == 5.0
        return "own result" if own and await self.acme_intact() else "acme's result or changed"

    async def batch_of_its_ids(self) -> str:
        theirs = f"batch-{uuid.uuid4().hex[:8]}"
        await self.http.post("/v1/calculations", params={"wait": 20}, headers=self.key("acme"),
                             json={"id": theirs, "op": "sum", "data": [1.0]})
        answer = await self.http.post("/v1/calculations/batch", headers=self.key("bravo"),
                                      json=[{"id": theirs, "op": "sum", "data": [9.0]}])
        summary = answer.json()
        own = summary.get("accepted") == 1 and summary.get("duplicates") == 0  # not a 409
        mine = (await self.http.get(f"/v1/calculations/{theirs}",
                                    headers=self.key("acme"))).json().get("result")
        return "own request" if own and mine == 1.0 else "touched acme's"

    async def ws_watch_its_id(self) -> str:
        marker = f"marker-{uuid.uuid4().hex[:8]}"
        async with connect(self.keyed.api.ws_url) as ws:
            await ws.send(orjson.dumps({"type": "auth", "key": self.keyed.keys["bravo"]})
                          .decode())
            await ws.recv()
            other = f"other-{uuid.uuid4().hex[:8]}"  # an acme id bravo never submitted
            await self.http.post("/v1/calculations", params={"wait": 20},
                                 headers=self.key("acme"),
                                 json={"id": other, "op": "sum", "data": [1.0]})
            await ws.send(orjson.dumps({"type": "subscribe", "ids": [other]}).decode())
            await ws.send(orjson.dumps({"type": "submit", "request": {
                "id": marker, "op": "sum", "data": [1.0]}}).decode())
            seen = await _results_until(ws, marker)
        return "nothing of acme's" if other not in seen else "acme's result"

    async def ws_all_stream(self) -> str:
        async with connect(self.keyed.api.ws_url) as ws:
            await ws.send(orjson.dumps({"type": "auth", "key": self.keyed.keys["bravo"]})
                          .decode())
            await ws.recv()
            await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
            await ws.recv()
            theirs, mine = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
            for name, rid in (("acme", theirs), ("bravo", mine)):
                await self.http.post("/v1/calculations", params={"wait": 20},
                                     headers=self.key(name),
                                     json={"id": rid, "op": "sum", "data": [1.0]})
            seen = await _results_until(ws, mine)
        return "nothing of acme's" if theirs not in seen else "acme's result"

    async def ws_unauthenticated(self) -> str:
        async with connect(self.keyed.api.ws_url) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "all": True}).decode())
            return await _refusal(ws)

    async def ws_wrong_key_header(self) -> str:
        async with connect(self.keyed.api.ws_url, additional_headers=self.key("revoked")) as ws:
            return await _refusal(ws)

    async def stats_without_admin(self) -> str:
        return await self.status("GET", "/v1/stats", headers=self.key("bravo"))

    async def metrics_without_admin(self) -> str:
        return await self.status("GET", "/metrics", headers=self.key("bravo"))

    async def flood(self) -> str:
        body = {"op": "sum", "data": [1.0]}
        codes = [int(await self.status("POST", "/v1/calculations", json=body,
                                       headers=self.key("carol")))
                 for _ in range(BURST + 10)]
        others = await self.status("POST", "/v1/calculations", json=body,
                                   headers=self.key("dave"))
        return f"429 after {codes.index(429)}, others {others}" if 429 in codes else "no 429"


ATTACKS: list[tuple[str, str, Callable[[_Attacks], Awaitable[str]]]] = [
    ("no API key", "401", _Attacks.no_key),
    ("a key with a wrong secret", "401", _Attacks.wrong_key),
    ("a revoked key", "401", _Attacks.revoked_key),
    ("a valid key in the URL (?api_key=)", "401", _Attacks.key_in_url),
    ("a submit-only key reading a result", "403", _Attacks.wrong_scope),
    ("bravo: GET acme's id", "404", _Attacks.read_by_id),
    ("bravo: POST ?wait= with acme's id", "own result", _Attacks.wait_on_its_id),
    ("bravo: a batch naming acme's id", "own request", _Attacks.batch_of_its_ids),
    ("bravo: WebSocket watch of acme's id", "nothing of acme's", _Attacks.ws_watch_its_id),
    ("bravo: WebSocket `all` stream", "nothing of acme's", _Attacks.ws_all_stream),
    ("a WebSocket that never authenticates", "unauthorized, closed 1008",
     _Attacks.ws_unauthenticated),
    ("a WebSocket handshake with a revoked key", "unauthorized, closed 1008",
     _Attacks.ws_wrong_key_header),
    ("bravo: GET /v1/stats", "403", _Attacks.stats_without_admin),
    ("bravo: GET /metrics", "403", _Attacks.metrics_without_admin),
    (f"carol: {BURST + 10} submits at once (rate {RATE:g}/s, burst {BURST})",
     f"429 after {BURST}, others 202", _Attacks.flood),
]


async def run_attacks(keyed: Keyed) -> list[Outcome]:
    """Every attack against ``keyed`` (a stack with the ``RATE``/``BURST`` quota)."""
    async with httpx.AsyncClient(base_url=keyed.api.base_url, timeout=30) as http:
        attacks = _Attacks(keyed, http)
        await attacks.plant()
        out = []
        for name, expected, attack in ATTACKS:
            try:
                observed = await asyncio.wait_for(attack(attacks), 60)
            except Exception as exc:  # an attack that broke is reported, not hidden
                observed = f"error: {type(exc).__name__}: {exc}"
            out.append(Outcome(name, expected, observed))
        return out


def table(outcomes: list[Outcome]) -> list[str]:
    """The security section of RELIABILITY.md."""
    lines = ["## Security", "",
             "Attacks on the API with keys (`tests/faults/attacks.py`, also run by "
             "`make test`): tenant bravo and callers with wrong keys go after tenant acme's "
             "work. The Kafka side (SASL, TLS, ACLs) is tested in "
             "`tests/core/test_secure_kafka.py`.", "",
             "| attack | must get | got | held |", "|---|---|---|---|"]
    lines += [f"| {o.attack} | {o.expected} | {o.observed} | {'yes' if o.held else 'NO'} |"
              for o in outcomes]
    return [*lines, ""]


async def _refusal(ws: Any) -> str:
    """The error code a socket got, and how it was closed."""
    code = orjson.loads(await ws.recv())["error"]["code"]
    try:
        await ws.recv()
    except ConnectionClosed as closed:
        return f"{code}, closed {closed.rcvd.code if closed.rcvd else '?'}"
    return f"{code}, left open"


async def _results_until(ws: Any, last_id: str) -> set[str]:
    """Ids of the result messages up to and including ``last_id``'s."""
    seen: set[str] = set()
    async with asyncio.timeout(30):
        while last_id not in seen:
            msg = orjson.loads(await ws.recv())
            if msg["type"] == "result":
                seen.add(msg["id"])
    return seen
