"""The embedded Kafka's classpath: Apache Kafka's jars, resolved once by Maven into a cache.

The version is the one ``pom.xml`` beside this module pins. The jars land in
``<cache>/kafka-<version>-<pom digest>/libs`` (the cache is ``$CALCSTREAM_CACHE_DIR``, else
``$XDG_CACHE_HOME/calcstream``, else ``~/.cache/calcstream``), so a changed POM resolves
afresh and an unchanged one never runs Maven again. Maven itself downloads only into its own
local repository (``~/.m2``); nothing is fetched any other way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from core.kafka.errors import KafkaSetupError

logger = logging.getLogger(__name__)

_POM = "pom.xml"
_DONE = "classpath.txt"
_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_DOWNLOADED = re.compile(r"Downloaded from \S+: (\S+) \(([\d.]+) (B|kB|MB|GB)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
MIN_JAVA = 17

Progress = Callable[[str], None]


def pom_path() -> Path:
    """The POM that pins the broker's version and its logging binding."""
    return Path(str(resources.files("core.kafka") / _POM))


def kafka_version() -> str:
    """The Apache Kafka version the POM pins."""
    root = ET.parse(pom_path()).getroot()
    version = root.findtext("m:properties/m:kafka.version", namespaces=_NS)
    if not version:
        raise KafkaSetupError(f"{pom_path()} names no kafka.version")
    return version


def cache_root() -> Path:
    """Where calcstream keeps what it fetched: the broker's jars, the JVM's class archive."""
    if explicit := os.environ.get("CALCSTREAM_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "calcstream"


def install_dir() -> Path:
    """This POM's own folder in the cache."""
    digest = hashlib.sha256(pom_path().read_bytes()).hexdigest()[:10]
    return cache_root() / f"kafka-{kafka_version()}-{digest}"


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on the PATH, checked to be Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaSetupError(
            "the embedded Apache Kafka needs Java 17 or newer, and no `java` was found: "
            "install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)" + _ELSEWHERE)
    found = _java_major(java)
    if found < MIN_JAVA:
        raise KafkaSetupError(
            f"the embedded Apache Kafka needs Java {MIN_JAVA} or newer, and {java} is Java "
            f"{found}: install a newer one (apt-get install openjdk-17-jre-headless) or point "
            "JAVA_HOME at it" + _ELSEWHERE)
    return java


_ELSEWHERE = (". Or use a Kafka you already have: CALCSTREAM_BOOTSTRAP_SERVERS=host:port, "
              "or `docker compose up` (docker-compose.yml).")


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    # Java 8 and older call themselves "1.8".
    return int(match.group(2) or 0) if major == 1 else major


def classpath(progress: Progress | None = None) -> str:
    """The broker's classpath, resolving it through Maven on first use.

    ``progress`` hears how far a first resolution got; a cached one says nothing.
    """
    target = install_dir()
    done = target / _DONE
    if done.exists():
        return done.read_text().strip()
    return _resolve(target, progress or (lambda line: logger.info("%s", line)))


def _resolve(target: Path, say: Progress) -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaSetupError(
            f"the embedded Apache Kafka {kafka_version()} is fetched once through Maven, and "
            "no `mvn` was found: install it (Debian/Ubuntu: apt-get install maven)"
            + _ELSEWHERE)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Resolve into a private folder and move it into place whole: a run that was interrupted,
    # or another one resolving at the same moment, never leaves a half-filled cache behind.
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    libs = staging / "libs"
    say(f"fetching Apache Kafka {kafka_version()} through Maven (first run only) into {target}")
    argv = [mvn, "-B", "-f", str(pom_path()), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
    try:
        tail = _run_maven(argv, say)
        jars = sorted(libs.glob("*.jar"))
        if not jars:
            raise KafkaSetupError("Maven resolved no jars for the embedded Apache Kafka:\n"
                                  + "\n".join(tail))
        cp = os.pathsep.join(str(target / "libs" / j.name) for j in jars)
        size = sum(j.stat().st_size for j in jars)
        (staging / _DONE).write_text(cp + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _DONE).exists():
                raise
            # Another process finished first; its copy is as good as ours.
        say(f"Apache Kafka {kafka_version()}: {len(jars)} jars ({size / 1e6:.0f} MB) ready")
        return (target / _DONE).read_text().strip()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run_maven(argv: list[str], say: Progress, every_s: float = 2.0) -> list[str]:
    """Run Maven, passing on how many files it has downloaded so far; the last lines of its
    output, or ``KafkaSetupError`` with them when it fails."""
    files, size, last_said = 0, 0.0, time.monotonic()
    tail: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-29:], line.rstrip()]
            if match := _DOWNLOADED.search(line):
                files += 1
                size += float(match.group(2)) * _UNITS[match.group(3)]
                if time.monotonic() - last_said >= every_s:
                    last_said = time.monotonic()
                    say(f"  ... {files} files ({size / 1e6:.1f} MB) downloaded, latest "
                        f"{match.group(1).rsplit('/', 1)[-1]}")
    if proc.returncode != 0:
        raise KafkaSetupError(f"Maven could not resolve Apache Kafka {kafka_version()} "
                              f"(exit code {proc.returncode}):\n" + "\n".join(tail))
    if files:
        say(f"  ... {files} files ({size / 1e6:.1f} MB) downloaded")
    return tail
