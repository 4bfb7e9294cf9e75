"""How the API's HTTP server is configured, from its settings."""

from __future__ import annotations

import httpx

from core.net import free_port
from producer_api.__main__ import config
from producer_api.settings import ApiSettings


def test_an_idle_connection_outlives_the_clients_keep_alive() -> None:
    """The client closes an idle connection first: a server that closes it as the client
    sends a POST into it fails that request with a connection error, not a status."""
    served = config(ApiSettings(), "127.0.0.1", free_port())
    assert served.timeout_keep_alive == ApiSettings().keep_alive_s
    client_expiry = httpx.Limits().keepalive_expiry  # httpx's default, our client's
    assert client_expiry is not None and served.timeout_keep_alive > client_expiry
    assert served.timeout_keep_alive > 60  # nginx's upstream and AWS balancers' default idle


def test_the_keep_alive_is_a_setting() -> None:
    assert config(ApiSettings(keep_alive_s=3), "127.0.0.1", free_port()).timeout_keep_alive == 3


def test_websocket_compression_is_off_unless_asked_for() -> None:
    # Compressing runs on the event loop (bench/FINDINGS.md 29): off, whatever a client offers.
    assert config(ApiSettings(), "127.0.0.1", free_port()).ws_per_message_deflate is False
    assert config(ApiSettings(ws_compression=True), "127.0.0.1",
                  free_port()).ws_per_message_deflate is True
