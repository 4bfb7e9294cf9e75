"""Does a broker answer? One Metadata request over a plain socket, without a client library.

A listening port is not readiness: a KRaft broker accepts connections before it has joined its
controller. A Metadata response that lists at least one broker is.
"""

from __future__ import annotations

import socket
import ssl
import struct

_METADATA, _VERSION = 3, 4  # Metadata v4: every broker since Kafka 1.0, and 4.x, answer it
_HANDSHAKE, _AUTHENTICATE = 17, 36
_CLIENT = b"calcstream-probe"


def metadata_brokers(host: str, port: int, timeout: float = 1.0, *,
                     tls: ssl.SSLContext | None = None,
                     plain: tuple[str, str] | None = None) -> int:
    """How many brokers the cluster's metadata lists; 0 if nothing answered.

    ``tls``: the listener speaks TLS; ``plain``: authenticate first with SASL PLAIN as
    (user, password): SaslHandshake v1, then SaslAuthenticate v0.
    """
    metadata = struct.pack(">i?", -1, False)  # all topics, create none
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                (tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw) as sock:
            sock.settimeout(timeout)
            if plain is not None:
                mechanism = b"PLAIN"
                _call(sock, _HANDSHAKE, 1, struct.pack(">h", len(mechanism)) + mechanism)
                token = b"\0" + plain[0].encode() + b"\0" + plain[1].encode()
                answer = _call(sock, _AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
                if struct.unpack(">h", answer[:2])[0] != 0:
                    return 0
            # throttle time, then the length of the brokers array
            _, brokers = struct.unpack(">ii", _call(sock, _METADATA, _VERSION, metadata)[:8])
            return max(0, int(brokers))
    except (OSError, struct.error):
        return 0


def _call(sock: socket.socket, api: int, version: int, body: bytes) -> bytes:
    """One request (header v1) and its response body, after the correlation id."""
    request = struct.pack(">hhih", api, version, 1, len(_CLIENT)) + _CLIENT + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _read(sock, 4))
    return _read(sock, size)[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
