"""Headless Chromium, driven over the Chrome DevTools Protocol with ``websockets``.

No WebDriver and no browser download: the Debian ``chromium`` package and a CDP socket are
all it takes. Only what the page tests need: open a page, evaluate JavaScript, wait for a
condition, take a screenshot, and collect uncaught page errors and (after ``Network.enable``)
the URLs the page requested.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium"


def require_chromium() -> None:
    """Fail, saying how to install it, unless Debian's Chromium is there."""
    if not CHROMIUM.exists():
        pytest.fail(f"headless Chromium is needed at {CHROMIUM}: install it with `{INSTALL}` "
                    "(as root; `make test` does it when it can)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0")


class CdpError(Exception):
    """Chromium answered a command with an error, or the page threw."""


class Browser:
    """One headless Chromium with one page; ``async with Browser(profile_dir) as page``."""

    def __init__(self, profile: Path, width: int = 1440, height: int = 1000) -> None:
        self.profile = profile
        self.width = width
        self.height = height
        self.errors: list[str] = []
        self.requested: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()

    async def __aenter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}",
            f"--window-size={self.width},{self.height}", "about:blank",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = await self._devtools_port()
            async with httpx.AsyncClient(timeout=10) as http:
                targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page = next(t for t in targets if t["type"] == "page")
            self._ws = await connect(page["webSocketDebuggerUrl"], max_size=None)
            self._reader = asyncio.get_running_loop().create_task(self._read())
            for domain in ("Page", "Runtime"):
                await self.send(f"{domain}.enable")
            await self.send("Emulation.setDeviceMetricsOverride", width=self.width,
                            height=self.height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket and end the browser; safe to call twice."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command on the page; its result."""
        assert self._ws is not None, "the browser is not started"
        ident = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        await self._ws.send(orjson.dumps({"id": ident, "method": method,
                                          "params": params}).decode())
        return await asyncio.wait_for(fut, 30)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise CdpError(f"navigating to {url}: {answer['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), timeout)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        answer = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {value!r} after {timeout}s; "
                                   f"page errors: {self.errors}")
            await asyncio.sleep(0.05)  # noqa: ASYNC110 - polling the page, no event exists

    async def screenshot(self, path: Path) -> bytes:
        """Save a PNG of the whole page; its bytes."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": size["width"],
                                     "height": size["height"], "scale": 1})
        png = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, png)
        return png

    async def _devtools_port(self, timeout: float = 30.0) -> int:
        """Chromium writes its debugging port into the profile once it listens."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise CdpError(f"chromium exited with code {self._proc.returncode}")
            if marker.exists():
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium did not open its debugging port in {timeout}s")
            await asyncio.sleep(0.05)  # noqa: ASYNC110 - polling a file chromium writes

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            msg = orjson.loads(raw)
            if "id" in msg:
                fut = self._pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        fut.set_exception(CdpError(str(msg["error"])))
                    else:
                        fut.set_result(msg.get("result", {}))
            elif msg.get("method") == "Network.requestWillBeSent":
                self.requested.append(msg["params"]["request"]["url"])
            elif msg.get("method") == "Page.loadEventFired":
                self._loaded.set()
            elif msg.get("method") == "Runtime.exceptionThrown":
                details = msg["params"]["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description")
                                   or details.get("text", "exception"))
