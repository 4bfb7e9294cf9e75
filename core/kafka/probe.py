"""Does a broker answer? One Metadata request over a plain socket, without a client library.

A listening port is not readiness: a KRaft broker accepts connections before it has joined its
controller. A Metadata response that lists at least one broker is.
"""

from __future__ import annotations

import socket
import struct

_METADATA, _VERSION = 3, 4  # Metadata v4: every broker since Kafka 1.0, and 4.x, answer it
_CLIENT = b"calcstream-probe"


def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int:
    """How many brokers the cluster's metadata lists; 0 if nothing answered."""
    request = (struct.pack(">hhih", _METADATA, _VERSION, 1, len(_CLIENT)) + _CLIENT
               + struct.pack(">i?", -1, False))  # all topics, create none
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _read(sock, 4))
            # correlation id, throttle time, then the length of the brokers array
            _, _, brokers = struct.unpack(">iii", _read(sock, min(size, 12)))
            return max(0, int(brokers))
    except (OSError, struct.error):
        return 0


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
