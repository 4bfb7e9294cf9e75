"""The interactive docs (/docs, /redoc) load every script and style sheet from the API itself."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from tests.producer_api.chromium import Browser, require_chromium
from tests.producer_api.conftest import ApiStack


class Assets(HTMLParser):
    """The URLs a page's ``<script src>`` and ``<link href>`` tags load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def assets_of(html: str) -> list[str]:
    parser = Assets()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("path, files", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png"}),
])
async def test_the_docs_pages_load_their_assets_from_the_api(
    client: httpx.AsyncClient, path: str, files: set[str],
) -> None:
    page = await client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = assets_of(page.text)
    assert {url.rsplit("/", 1)[-1] for url in urls} == files, urls
    for url in urls:
        absolute = client.base_url.join(url)
        assert (absolute.scheme, absolute.host, absolute.port) == (
            client.base_url.scheme, client.base_url.host, client.base_url.port), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 4096, (url, len(asset.content))
    assert (await client.get("/docs/secrets.txt")).status_code == 404


async def test_swagger_ui_renders_every_operation_from_the_api_alone(
    api: ApiStack, client: httpx.AsyncClient, tmp_path: Path,
) -> None:
    require_chromium()
    spec = (await client.get("/openapi.json")).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    async with Browser(tmp_path / "profile") as page:
        await page.send("Network.enable")
        await page.goto(f"{api.base_url}/docs")
        await page.wait_for(f"document.querySelectorAll('.opblock').length === {operations}")
        paths = await page.evaluate(
            "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)")
        assert page.errors == []
    assert "/v1/calculations" in paths
    assert page.requested, "no request was seen"
    foreign = [url for url in page.requested
               if not url.startswith((f"{api.base_url}/", "data:", "blob:"))]
    assert foreign == []
