"""A real load balancer for tests: Debian's nginx, on a free port, with a generated config.

Round robin over the API replicas given, WebSockets passed through, and an ``X-Upstream``
response header naming the replica that answered. A replica that refuses connections (not
started yet, or gone) is skipped for the next one; nothing else is retried by nginx,
so what a client sees of a replica dying mid-request is that request failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from core.net import free_port

_CONFIG = """\
{user}
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  upstream calcstream_api {{
{servers}
  }}
  map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://calcstream_api;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_next_upstream error;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    """Debian's nginx, if installed (``make test-tools`` installs it)."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)


class Nginx:
    """``nginx`` in front of ``upstreams`` (ports on 127.0.0.1); ``close()`` stops it."""

    def __init__(self, upstreams: Sequence[int]) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("the reply-routing tests need nginx (Debian: apt-get install "
                               "nginx; `make test-tools` installs it)")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="calcstream-nginx-"))
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;"
                            for p in upstreams)
        config = self.dir / "nginx.conf"
        config.write_text(_CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "", dir=self.dir, servers=servers,
            port=self.port))
        self.proc = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(config),
                                      "-e", str(self.dir / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            self._wait_listening()
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # nginx answered (a 502 while no replica is up yet)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        """nginx's error log."""
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop nginx and remove its directory; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
