"""A node that lets in only whom it should: one SASL_SSL listener, SCRAM and PLAIN users, ACLs.

    clients ──SASL_SSL (TLS 1.2+, SCRAM-SHA-512/256 or PLAIN)──▶ 127.0.0.1:<port>
    controller ──PLAINTEXT──▶ 127.0.0.1:<controller port>  (the node talking to itself)

``make_certificates`` writes a CA, the node's certificate (for 127.0.0.1 and localhost) and a
client certificate with ``openssl``; ``secure_node`` starts an ``EmbeddedKafka`` that requires
a client certificate and a SASL login, authorizes with ``StandardAuthorizer`` and lets a
principal do only what an ACL allows (``allow.everyone.if.no.acl.found=false``). ``User:admin``
is the super user calcstream sets up with; so is ``User:ANONYMOUS``, the principal of the
controller listener, which serves only controller requests and listens on loopback.

SCRAM users exist from the first start (``StorageTool format --add-scram``): the set of users
is fixed when the data directory is created, so their passwords stand in the JVM's command
line of that one format run, as Kafka's tooling requires. For a machine one person uses.
"""

from __future__ import annotations

import secrets
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from core.kafka.errors import KafkaStartError
from core.kafka.node import EmbeddedKafka
from core.kafka.probe import metadata_brokers
from core.settings import BrokerSettings

ADMIN = "admin"
LISTENER = "SASL_SSL"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class Certificates:
    """Where ``make_certificates`` put what."""

    ca: Path
    keystore: Path  # the node's key and certificate chain, PKCS#12
    keystore_password: str
    client_cert: Path
    client_key: Path


@dataclass(frozen=True, slots=True)
class User:
    """A principal (``User:<name>``) that logs in with SCRAM (both hashes) or PLAIN."""

    name: str
    password: str


class Resource(IntEnum):
    """Kafka's ACL resource types."""

    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    """Kafka's ACL operations."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


@dataclass(frozen=True, slots=True)
class Acl:
    """Allow ``user`` to ``operation`` on a literal (or, with ``prefix``, prefixed) name."""

    user: str
    resource: Resource
    name: str
    operation: Operation
    prefix: bool = False


def make_certificates(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """A CA, a certificate for the node (``host`` and localhost) and one for clients."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "30", "-subj", "/CN=calcstream test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    node_cert, node_key = _signed(directory, "node", ca, ca_key,
                                  f"subjectAltName=IP:{host},DNS:localhost")
    client_cert, client_key = _signed(directory, "client", ca, ca_key,
                                      "extendedKeyUsage=clientAuth")
    password = secrets.token_urlsafe(16)
    keystore = directory / "node.p12"
    _openssl("pkcs12", "-export", "-in", node_cert, "-inkey", node_key, "-certfile", ca,
             "-name", "node", "-out", keystore, "-passout", f"pass:{password}")
    for key in (ca_key, node_key, client_key):
        key.chmod(0o600)
    keystore.chmod(0o600)
    return Certificates(ca, keystore, password, client_cert, client_key)


def _signed(directory: Path, name: str, ca: Path, ca_key: Path, extension: str
            ) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.csr")
    ext = directory / f"{name}.ext"
    ext.write_text(extension + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN=calcstream {name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "30", "-extfile", ext)
    csr.unlink()
    ext.unlink()
    return cert, key


def _openssl(*argv: object) -> None:
    try:
        done = subprocess.run(["openssl", *map(str, argv)], capture_output=True, text=True,
                              check=False, timeout=60)
    except FileNotFoundError:
        raise KafkaStartError("openssl is not installed (apt-get install openssl)") from None
    if done.returncode != 0:
        raise KafkaStartError(f"openssl {argv[0]} failed: {done.stderr.strip()}")


def secure_settings(certs: Certificates, admin: User, plain_users: Iterable[User]
                    ) -> dict[str, str]:
    """Broker settings for the SASL_SSL listener, its users and the authorizer."""
    listener = f"listener.name.{LISTENER.lower()}"
    plain = " ".join(f'user_{u.name}="{u.password}"' for u in [admin, *plain_users])
    settings = {
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"{listener}.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin.name}" password="{admin.password}" {plain};',
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(certs.keystore),
        "ssl.keystore.password": certs.keystore_password,
        "ssl.key.password": certs.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca),
        "ssl.client.auth": "required",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin.name};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    for mechanism in MECHANISMS[1:]:
        settings[f"{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    return settings


def client_tls(certs: Certificates) -> ssl.SSLContext:
    """A TLS context that trusts the CA and presents the client certificate."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return context


def secure_node(port: int, certs: Certificates, admin: User, users: Sequence[User], *,
                data_dir: Path | None = None, **options: object) -> EmbeddedKafka:
    """An ``EmbeddedKafka`` (not started) with a SASL_SSL listener; every user in ``users``
    may log in with SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, and may do what ``grant`` allows."""
    scram = [arg for user in [admin, *users] for mechanism in MECHANISMS[1:]
             for arg in ("--add-scram",
                         f"{mechanism}=[name={user.name},password={user.password}]")]
    tls = client_tls(certs)
    host = str(options.pop("host", "127.0.0.1"))

    def answers() -> bool:
        return metadata_brokers(host, port, tls=tls, plain=(admin.name, admin.password)) > 0

    return EmbeddedKafka(port, host=host, data_dir=data_dir,
                         settings=secure_settings(certs, admin, users), listener=LISTENER,
                         format_options=scram, probe=answers, **options)  # type: ignore[arg-type]


def client_settings(bootstrap: str, certs: Certificates, user: User,
                    mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
    """``BrokerSettings`` fields for ``user`` on a ``secure_node``."""
    return {"bootstrap_servers": bootstrap, "security_protocol": LISTENER,
            "sasl_mechanism": mechanism, "sasl_username": user.name,
            "sasl_password": user.password, "ssl_cafile": certs.ca,
            "ssl_certfile": certs.client_cert, "ssl_keyfile": certs.client_key}


async def grant(settings: BrokerSettings, acls: Iterable[Acl]) -> None:
    """Create the ACLs (``settings`` must log in as a super user)."""
    admin = AIOKafkaAdminClient(**settings.connection_options())
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(acl.resource, acl.name, 4 if acl.prefix else 3,
                                        f"User:{acl.user}", "*", acl.operation, 3)  # ALLOW
            response = await admin._send_request(request)  # noqa: SLF001 - no public call
            for code, message in response.creation_responses:
                if code:
                    raise KafkaStartError(f"creating the ACL {acl} failed: {code} {message}")
    finally:
        await admin.close()


def service_acls(topics: Iterable[str], requests: str, results: str, dlq: str, group: str,
                 worker: str, api: str, journal: str | None = None,
                 api_group: str | None = None) -> list[Acl]:
    """What the worker and the API may do, and nothing more: the worker reads requests (in its
    group) and writes results and dead letters (and its journal); the API writes requests and
    reads results (in its reply group, ``api_group``, when the replicas share them)."""
    acls = [Acl(worker, Resource.TOPIC, requests, Operation.READ),
            Acl(worker, Resource.GROUP, group, Operation.READ),
            Acl(worker, Resource.TOPIC, results, Operation.WRITE),
            Acl(worker, Resource.TOPIC, dlq, Operation.WRITE),
            Acl(api, Resource.TOPIC, requests, Operation.WRITE),
            Acl(api, Resource.TOPIC, results, Operation.READ)]
    if api_group is not None:
        acls.append(Acl(api, Resource.GROUP, api_group, Operation.READ))
    if journal is not None:
        acls += [Acl(worker, Resource.TOPIC, journal, Operation.READ),
                 Acl(worker, Resource.TOPIC, journal, Operation.WRITE)]
    known = set(topics)
    return [acl for acl in acls if acl.resource != Resource.TOPIC or acl.name in known]
