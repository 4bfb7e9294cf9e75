"""Who is calling: API keys checked at the door; the caller's tenant and scopes for the rest.

    endpoint                                         needs
    POST /v1/calculations, /v1/calculations/batch    submit
    GET  /v1/calculations/{id}                       read
    GET  /v1/stats, /metrics                         admin
    WS   /v1/ws                                      a key, then per message: submit, read
    /healthz /readyz /docs /redoc /openapi.json      nothing: they hold no one's data
    /v1/ops /v1/asyncapi.json /v1/limits
    / /dashboard (the page; its data needs admin)
    anything else                                    a valid key

The key travels as ``Authorization: Bearer <key>``, never in a URL (URLs land in access logs
and browser history): a key in the query string is refused with a 401 that says so. Browsers
cannot set headers on a WebSocket, so a socket opened without one is let in unauthenticated
and must send ``{"type": "auth", "key": ...}`` first (``routes/ws.py``); a socket whose
handshake header holds a wrong key gets the ``unauthorized`` error and a 1008 close at once.

Without a keys file (``api_keys_file``) the API is open: every caller is ``OPEN``, with no
tenant and every scope, and ``__main__`` serves it on a loopback address only, unless told
``api_open``. With one, each caller is the ``Principal`` of its key, and sees the
calculations of its key's tenant alone (``store.scoped``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from core.keys import KeyFileError, KeyRing
from core.keys import Scope as KeyScope
from producer_api.errors import ApiError, Forbidden, Unauthorized
from producer_api.responses import send_error

logger = logging.getLogger(__name__)

PUBLIC = frozenset({"/", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json",
                    "/v1/ops", "/v1/asyncapi.json", "/v1/limits", "/dashboard"})
PUBLIC_PREFIXES = ("/docs/", "/dashboard/")
ADMIN_PATHS = frozenset({"/v1/stats", "/metrics"})
_KEY_PARAMS = frozenset({"key", "api_key", "apikey", "token", "access_token"})
_CHALLENGE = (b"www-authenticate", b'Bearer realm="calcstream"')


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: its tenant ("" for none), what it may do, and which key it used."""

    tenant: str
    scopes: frozenset[KeyScope]
    key_id: str | None = None

    def can(self, scope: KeyScope) -> bool:
        """The caller holds ``scope``."""
        return scope in self.scopes

    def require(self, scope: KeyScope) -> None:
        """``Forbidden`` unless the caller holds ``scope``."""
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")

    @property
    def sees_every_tenant(self) -> bool:
        """The ``all`` stream of this caller carries every tenant's results."""
        return KeyScope.ADMIN in self.scopes


OPEN = Principal("", frozenset(KeyScope))
"""The caller of an API without keys."""


def needed_scope(method: str, path: str) -> KeyScope | None:
    """The scope an HTTP request needs beyond a valid key (None: any valid key)."""
    if path.startswith("/v1/calculations"):
        return KeyScope.SUBMIT if method == "POST" else KeyScope.READ
    if path in ADMIN_PATHS:
        return KeyScope.ADMIN
    return None


def is_public(path: str) -> bool:
    """Answered without a key."""
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization`` header; ``Unauthorized`` for another scheme."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
            return token.strip()
    return None


def check_query(query: bytes) -> None:
    """``Unauthorized`` when the query string carries something that looks like a key."""
    if query and any(k.lower() in _KEY_PARAMS
                     for k, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)):
        raise Unauthorized("API keys go in the Authorization header, never in the URL (URLs "
                           "are logged); this key may have leaked: revoke it")


def authenticate(keys: KeyRing, token: str) -> Principal:
    """The principal of a key; ``Unauthorized`` when the key is not valid."""
    key = keys.verify(token)
    if key is None:
        raise Unauthorized("the API key is not valid (unknown, revoked or malformed)")
    return Principal(key.tenant, key.scopes, key.id)


class Authentication:
    """ASGI middleware: sets ``scope["state"]["principal"]`` or answers 401/403 itself."""

    def __init__(self, app: ASGIApp, keys: KeyRing | None) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.keys is None:
            state["principal"] = OPEN
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if kind == "http" and is_public(path):
            await self.app(scope, receive, send)
            return
        try:
            check_query(scope.get("query_string", b""))
            token = bearer(scope["headers"])
            if token is None:
                if kind == "websocket":  # authenticates with its first message
                    await self.app(scope, receive, send)
                    return
                raise Unauthorized("this endpoint needs an API key: send "
                                   "'Authorization: Bearer <key>'")
            principal = authenticate(self.keys, token)
            needed = needed_scope(scope["method"], path) if kind == "http" else None
            if needed is not None:
                principal.require(needed)
        except ApiError as exc:
            await _refuse(scope, receive, send, exc)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
    if scope["type"] == "websocket":
        # As a socket that fails its first message: the error, then a 1008 close. (A refused
        # handshake would carry no message a browser page can read.)
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": exc.body_bytes().decode()})
        await send({"type": "websocket.close", "code": 1008})
        return
    await send_error(send, exc, *([_CHALLENGE] if exc.status == 401 else []))


def principal_in(scope: Scope, keys: KeyRing | None) -> Principal:
    """The caller the middleware let in; without the middleware, ``OPEN`` only when the app
    has no keys (so an endpoint served some other way fails closed)."""
    principal = scope.get("state", {}).get("principal")
    if isinstance(principal, Principal):
        return principal
    if keys is None:
        return OPEN
    raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")


def principal_of(conn: HTTPConnection) -> Principal:
    """``principal_in`` for a request or socket of the app."""
    return principal_in(conn.scope, getattr(conn.app.state, "keys", None))


async def get_principal(conn: HTTPConnection) -> Principal:
    """``principal_of`` as a dependency (``async``: no thread hop per request)."""
    return principal_of(conn)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def refresh(keys: KeyRing) -> None:
    """Re-read the keys file if it changed; a broken file keeps the keys read before."""
    try:
        if keys.refresh():
            logger.info("API keys re-read from %s: %d active", keys.path, len(keys))
    except KeyFileError as exc:
        logger.error("the API keys file cannot be read (%s); keeping the %d keys read before",
                     exc, len(keys))
