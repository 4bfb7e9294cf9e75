"""``calcstream dev --secure``: the local stack on a SASL_SSL listener with ACLs.

Next to the broker's data directory, in ``<data dir>-credentials/`` (mode 0700), the first
start writes a CA and certificates (``core.kafka.secure``), a random password for each user
(``users.json``, mode 0600) and ``cli.env``, the ``CALCSTREAM_*`` variables that let
``calcstream tail``, ``ingest`` or any outside client log in as ``cli``. Later starts reuse
them, so the users the broker was formatted with keep their passwords; ``--fresh`` makes new
ones with the new data.

    user     may
    admin    everything (super user): creates the topics and the ACLs at start-up
    worker   read requests in its group, write results, dead letters and its journal
    api      write requests, read results
    cli      write requests, read results and dead letters
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from consumer.attempts import ensure_journal_topic
from consumer.settings import WorkerSettings
from core.admin import ensure_topics, wait_for_broker
from core.kafka import EmbeddedKafka
from core.kafka.jars import Progress
from core.kafka.secure import (
    Acl,
    Certificates,
    Operation,
    Resource,
    User,
    client_settings,
    grant,
    make_certificates,
    secure_node,
    service_acls,
)
from core.settings import BrokerSettings
from schemas.topics import reply_group_of

NAMES = ("admin", "worker", "api", "cli")


def default_secure_data_dir(plain: Path) -> Path:
    """Where ``--secure`` keeps its broker's data: beside the plain stack's, not in it."""
    return plain.with_name(plain.name + "-secure")


@dataclass(frozen=True)
class Credentials:
    """The certificates and users of one secure data directory."""

    directory: Path
    certs: Certificates
    users: dict[str, User]

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Credentials:
        """Those kept beside ``data_dir``, made on the first start."""
        directory = credentials_dir(data_dir)
        users_file = directory / "users.json"
        if users_file.exists():
            saved = orjson.loads(users_file.read_bytes())
            paths = {k: Path(v) for k, v in saved["certs"].items() if k != "keystore_password"}
            certs = Certificates(**paths, keystore_password=saved["certs"]["keystore_password"])
            return cls(directory, certs, {n: User(n, p) for n, p in saved["users"].items()})
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        certs = make_certificates(directory / "tls")
        users = {name: User(name, secrets.token_urlsafe(18)) for name in NAMES}
        doc = {"certs": {k: str(v) for k, v in asdict(certs).items()},
               "users": {u.name: u.password for u in users.values()}}
        users_file.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        users_file.chmod(0o600)
        return cls(directory, certs, users)

    def env(self, bootstrap: str, name: str) -> dict[str, str]:
        """``CALCSTREAM_*`` variables that log in as ``name``."""
        return {f"CALCSTREAM_{k.upper()}": str(v) for k, v in
                client_settings(bootstrap, self.certs, self.users[name]).items()}

    def settings(self, bootstrap: str, name: str, **fields: Any) -> BrokerSettings:
        """Broker settings that log in as ``name``."""
        return BrokerSettings(**{**client_settings(bootstrap, self.certs, self.users[name]),
                                 **fields})

    def write_cli_env(self, bootstrap: str) -> Path:
        """``cli.env``: the cli user's variables, for ``set -a; . cli.env``."""
        path = self.directory / "cli.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.env(bootstrap, "cli").items()))
        path.chmod(0o600)
        return path


def credentials_dir(data_dir: Path) -> Path:
    """Where the certificates and passwords of ``data_dir``'s broker live."""
    return data_dir.with_name(data_dir.name + "-credentials")


def wipe_credentials(data_dir: Path) -> None:
    """Forget the certificates and passwords (with ``--fresh``)."""
    shutil.rmtree(credentials_dir(data_dir), ignore_errors=True)


def node(port: int, data_dir: Path, creds: Credentials, progress: Progress,
         max_message_bytes: int) -> EmbeddedKafka:
    """The secure broker of the local stack (not started)."""
    others = [creds.users[n] for n in NAMES if n != "admin"]
    return secure_node(port, creds.certs, creds.users["admin"], others, data_dir=data_dir,
                       progress=progress, max_message_bytes=max_message_bytes)


async def prepare(bootstrap: str, creds: Credentials, settings: BrokerSettings,
                  group: str) -> None:
    """As admin: the topics, the worker's journal, and every user's ACLs."""
    topics = settings.topics
    admin = creds.settings(bootstrap, "admin", requests_topic=topics.requests,
                           results_topic=topics.results, dlq_topic=topics.dlq,
                           topic_partitions=settings.topic_partitions)
    await wait_for_broker(admin)
    await ensure_topics(admin)
    journal = WorkerSettings(requests_topic=topics.requests).journal_topic
    await ensure_journal_topic(admin, journal, settings.topic_partitions, 1)
    acls = service_acls([*topics.all(), journal], topics.requests, topics.results, topics.dlq,
                        group, "worker", "api", journal, reply_group_of(topics.results))
    acls += [Acl("cli", Resource.TOPIC, topics.requests, Operation.WRITE),
             Acl("cli", Resource.TOPIC, topics.results, Operation.READ),
             Acl("cli", Resource.TOPIC, topics.dlq, Operation.READ)]
    await grant(admin, acls)
