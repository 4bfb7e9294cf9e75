"""The ``calcstream`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.logs import configure

if TYPE_CHECKING:
    from core.settings import BrokerSettings

_EXAMPLES = argparse.RawDescriptionHelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run a subcommand."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from core.connections import guard_broken_connections  # aiokafka: only for commands

    guard_broken_connections()
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcstream",
        description="CPU-heavy NumPy work behind an async API, with Kafka in the middle.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")

    dev = sub.add_parser(
        "dev", help="run the whole stack locally: Apache Kafka, topics, worker(s), API",
        description="Start the embedded Apache Kafka (unless CALCSTREAM_BOOTSTRAP_SERVERS names "
        "a cluster), create the topics, start the worker(s) and the API. The broker keeps its "
        "data across restarts. Ctrl-C stops everything cleanly, the broker last.",
    )
    dev.add_argument("--broker-port", type=int, default=9092, help="embedded Kafka port (9092)")
    dev.add_argument("--brokers", type=_count, default=1, metavar="N",
                     help="embedded Kafka nodes (1); more run a cluster on --broker-port and "
                     "the ports after it, topics replicated 3 times (min.insync.replicas 2), "
                     "its data in kafka-N beside the one node's")
    _add_data_options(dev)
    dev.add_argument("--host", default="127.0.0.1", help="API bind address (127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="API port (8000)")
    dev.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    dev.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    dev.add_argument("--no-api", action="store_true", help="do not start the API")
    dev.add_argument("--metrics-port", type=int, default=9101,
                     help="first worker's /metrics port; worker i uses this + i (9101)")
    dev.add_argument("--secure", action="store_true",
                     help="Kafka over SASL_SSL with ACLs: a CA, certificates and a user per "
                     "service, made on the first start (its own data directory)")
    dev.set_defaults(func=_dev)

    worker = sub.add_parser(
        "worker", help="run one worker (settings from CALCSTREAM_* variables)",
        description="Consume the request topic, compute, publish results, commit. SIGTERM or "
        "SIGINT drains in-flight batches and exits 0.",
    )
    worker.set_defaults(func=_worker)

    broker = sub.add_parser(
        "broker", help="run only the embedded Apache Kafka",
        description="One Apache Kafka node (KRaft, broker and controller) on this machine, its "
        "jars resolved once by Maven. Ctrl-C, SIGTERM or SIGHUP (its terminal closing) stops it "
        "with a controlled shutdown.")
    broker.add_argument("--port", type=int, default=9092, help="listener port (9092)")
    _add_data_options(broker)
    broker.add_argument("--fetch", action="store_true",
                        help="only resolve the broker's jars (and check Java), then exit")
    broker.set_defaults(func=_broker)

    schema = sub.add_parser("schema", help="write the wire contracts as JSON Schema files")
    schema.add_argument("--out", type=Path, default=Path("schemas/jsonschema"))
    schema.add_argument("--check", action="store_true",
                        help="exit 1 if the files differ from the models instead of writing")
    schema.set_defaults(func=_schema)

    ops = sub.add_parser("ops", help="list the registered ops and their arguments")
    ops.set_defaults(func=_ops)

    asyncapi = sub.add_parser(
        "asyncapi", help="write the AsyncAPI 3.0 document for the three topics",
        description="Generate the AsyncAPI 3.0 document (channels, operations, messages with "
        "payload and header schemas) from the pydantic models in schemas/.",
    )
    asyncapi.add_argument("--out", type=Path, default=Path("schemas/asyncapi.json"),
                          help="file to write (schemas/asyncapi.json)")
    asyncapi.add_argument("--check", action="store_true",
                          help="exit 1 if the file differs from the models instead of writing")
    asyncapi.set_defaults(func=_asyncapi)

    _add_client_commands(sub)
    from calcstream.cli import keys

    keys.add_commands(sub)
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    from calcstream.dev import default_data_dir

    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"where the broker keeps its data ({default_data_dir()})")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the broker's data first and start empty")


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("broker")
    group.add_argument("--bootstrap", metavar="HOST:PORT",
                       help="Kafka bootstrap servers (default: $CALCSTREAM_BOOTSTRAP_SERVERS or "
                       "127.0.0.1:9092); topic names come from $CALCSTREAM_*_TOPIC")
    group.add_argument("--connect-timeout", type=_positive, default=3.0, metavar="S",
                       help="give up when no broker answers within S seconds (3); exit code 2")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="log the Kafka client's chatter")
    return common


def _add_client_commands(sub: Any) -> None:
    common = _client_options()

    ingest = sub.add_parser(
        "ingest", parents=[common], formatter_class=_EXAMPLES,
        help="send a file of requests (NDJSON, CSV, .npy) with a progress bar",
        description="Send every request in FILE to the request topic (acks=all), with a progress\n"
        "bar showing rate and ETA, and optionally collect the results.\n\n"
        "  NDJSON  one CalcRequest per line; id is optional (generated), and op/args may\n"
        "          come from --op/--args\n"
        "  CSV     one request per row of numbers (a first row without numbers is a\n"
        "          header); needs --op\n"
        "  .npy    a 2-D array, one request per row, sent as binary frames; needs --op\n\n"
        "Generated ids are PREFIX-N, N being the line or row number. Invalid lines or rows\n"
        "are skipped and reported at the end.\n\n"
        "With --via-api URL the requests go through the calcstream API instead of straight\n"
        "to Kafka (its batch endpoint: NDJSON bodies, .npy bodies for .npy files) and --results\n"
        "come over its websocket. .npy rows then get the ids PREFIX-FIRST-I, which is row\n"
        "FIRST+I of the file (the API numbers the rows of each body it receives). An API\n"
        "with keys takes the key from $CALCSTREAM_API_KEY.",
        epilog="examples:\n"
        "  calcstream ingest requests.ndjson --results out.ndjson\n"
        "  calcstream ingest rows.csv --op mean\n"
        "  calcstream ingest pairs.npy --op matmul --args '{\"m\": 2, \"k\": 2, \"n\": 2}'\n"
        "  calcstream ingest big.npy --op mean --via-api http://127.0.0.1:8000 --results out\n\n"
        "exit codes: 0 all sent (and all results received); 1 invalid lines skipped or\n"
        "results missing; 2 broker or API down, or bad input",
    )
    ingest.add_argument("file", type=Path, metavar="FILE", help="the requests")
    ingest.add_argument("--format", choices=("ndjson", "csv", "npy"),
                        help="input format (default: from the suffix: .ndjson/.jsonl/.json, "
                        ".csv, .npy)")
    ingest.add_argument("--op", help="op for every row (CSV, .npy) or default op (NDJSON)")
    ingest.add_argument("--args", type=_json_object, metavar="JSON",
                        help="op arguments as a JSON object, e.g. '{\"ddof\": 1}'")
    ingest.add_argument("--id-prefix", metavar="PREFIX",
                        help="prefix of generated ids (default: random)")
    ingest.add_argument("--results", type=Path, metavar="OUT",
                        help="collect the results, matched by id, into OUT as NDJSON; missing "
                        "ids are reported and listed in OUT.missing")
    ingest.add_argument("--timeout", type=_positive, default=60.0, metavar="S",
                        help="with --results: wait up to S seconds after the last request is "
                        "acknowledged (60)")
    ingest.add_argument("--window", type=_count, default=20_000, metavar="N",
                        help="requests sent but not yet acknowledged, at most (20000)")
    ingest.add_argument("--via-api", metavar="URL",
                        help="send through the calcstream API at URL (e.g. "
                        "http://127.0.0.1:8000) instead of to Kafka; --bootstrap is then unused")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bars")
    ingest.set_defaults(func=_ingest)

    tail = sub.add_parser(
        "tail", parents=[common], formatter_class=_EXAMPLES,
        help="follow the results topic, one line per result",
        description="Follow the results topic (and with --dlq the dead-letter topic) and print\n"
        "one line per record: time, status, op, id, result or error, batch and timings.\n"
        "--status and --op filter results; with --dlq every dead letter is shown.",
        epilog="examples:\n"
        "  calcstream tail\n"
        "  calcstream tail --status error --status expired --dlq\n"
        "  calcstream tail --from-beginning --op matmul --json | jq .result",
    )
    tail.add_argument("--status", action="append", choices=("ok", "error", "expired"),
                      help="only results with this status (repeatable)")
    tail.add_argument("--op", action="append", help="only results of this op (repeatable)")
    tail.add_argument("--dlq", action="store_true", help="also follow the dead-letter topic")
    tail.add_argument("--from-beginning", action="store_true",
                      help="start at the oldest record instead of now")
    tail.add_argument("--limit", type=_count, metavar="N", help="exit after printing N lines")
    tail.add_argument("--json", action="store_true", help="print the raw JSON of each record")
    tail.set_defaults(func=_tail)

    submit = sub.add_parser(
        "submit", parents=[common], formatter_class=_EXAMPLES,
        help="send one request and print its result",
        description="Send one request to the request topic, wait for its result on the results\n"
        "topic and print it: the value when ok, the error on stderr otherwise.",
        epilog="examples:\n"
        "  calcstream submit sum_of_squares 1 2 3\n"
        "  calcstream submit matmul 1 2 3 4 5 6 7 8 --args '{\"m\": 2, \"k\": 2, \"n\": 2}'\n"
        "  calcstream submit std 1 2 3 4 --args '{\"ddof\": 1}' --json\n\n"
        "exit codes: 0 ok; 1 the result is an error or expired; 2 broker down or invalid\n"
        "request; 3 no result within --timeout",
    )
    submit.add_argument("op", metavar="OP", help="op name (`calcstream ops` lists them)")
    submit.add_argument("data", nargs="+", type=float, metavar="DATA", help="the numbers")
    submit.add_argument("--args", type=_json_object, metavar="JSON",
                        help="op arguments as a JSON object")
    submit.add_argument("--id", help="request id (default: random)")
    submit.add_argument("--deadline", type=float, metavar="S",
                        help="answer 'expired' instead of computing if still queued S seconds "
                        "from now")
    submit.add_argument("--timeout", type=_positive, default=30.0, metavar="S",
                        help="wait up to S seconds for the result (30); exit code 3 after")
    submit.add_argument("--json", action="store_true", help="print the whole result as JSON")
    submit.set_defaults(func=_submit)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"ddof\": 1}'")
    return value


def _dev(args: argparse.Namespace) -> int:
    from calcstream.dev import DevOptions, DevStack, default_data_dir, interrupt_on_stop
    from core.kafka import EmbeddedKafkaError

    configure("INFO")
    from calcstream.dev.secure import default_secure_data_dir

    data_dir = args.data_dir or (
        default_secure_data_dir(default_data_dir()) if args.secure
        else default_data_dir().with_name(f"kafka-{args.brokers}") if args.brokers > 1
        else default_data_dir())
    stack = DevStack(DevOptions(broker_port=args.broker_port, brokers=args.brokers,
                                api_host=args.host,
                                api_port=args.port, workers=args.workers,
                                partitions=args.partitions, with_api=not args.no_api,
                                metrics_port=args.metrics_port, data_dir=data_dir,
                                fresh=args.fresh, secure=args.secure))
    interrupt_on_stop()  # while it starts; wait() then stops it in order
    try:
        stack.start()
        return stack.wait()
    except KeyboardInterrupt:
        return 130
    except (EmbeddedKafkaError, ValueError) as exc:
        print(f"calcstream dev: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.stop()


def _worker(args: argparse.Namespace) -> int:
    from consumer.__main__ import main as worker_main

    worker_main()
    return 0


def _broker(args: argparse.Namespace) -> int:
    import signal

    from calcstream.dev import STOP_SIGNALS, default_data_dir, interrupt_on_stop
    from core.kafka import EmbeddedKafka, EmbeddedKafkaError, wipe_data_dir
    from core.kafka.jars import classpath, java_executable, kafka_version

    configure("INFO")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    data_dir = args.data_dir or default_data_dir()
    stop = set(STOP_SIGNALS)
    interrupt_on_stop()  # while the broker starts; sigwait takes the signals once it is up
    try:
        if args.fetch:
            java_executable()
            classpath(say)
            print(f"Apache Kafka {kafka_version()} is ready to run", flush=True)
            return 0
        if args.fresh:
            wipe_data_dir(data_dir)
        with EmbeddedKafka(args.port, data_dir=data_dir, progress=say) as broker:
            # sigwait needs the signals blocked, or SIGTERM or SIGHUP kills us and orphans the
            # broker.
            # Block them only now: the broker process would inherit the mask and ignore our
            # SIGTERM.
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            print(f"Apache Kafka {kafka_version()} on {broker.bootstrap_servers}, data in "
                  f"{broker.data_dir}, its log in {broker.log_path}; Ctrl-C stops it",
                  flush=True)
            signal.sigwait(stop)
            print("stopping the broker (controlled shutdown)", flush=True)
    except KeyboardInterrupt:
        return 130
    except EmbeddedKafkaError as exc:
        print(f"calcstream broker: {exc}", file=sys.stderr)
        return 2
    return 0


def _schema(args: argparse.Namespace) -> int:
    from schemas.export import export_all

    documents = export_all()
    stale = []
    for name, doc in documents.items():
        path = args.out / name
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run `make schema`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


def _ops(args: argparse.Namespace) -> int:
    from schemas.ops import catalogue

    for op in catalogue():
        props = op["args"].get("properties", {})
        arglist = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items()) or "-"
        print(f"{op['name']:<16} args({arglist})  {op['summary']}")
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from schemas.asyncapi import build

    text = json.dumps(build(), indent=2, sort_keys=True) + "\n"
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"out of date (run `calcstream asyncapi --out {args.out}`): {args.out}",
                  file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


def _run_client(args: argparse.Namespace,
                command: Callable[[BrokerSettings], Awaitable[int]]) -> int:
    """Run a client command; its failures become one line on stderr and an exit code."""
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from calcstream.cli.errors import CommandError
    from core.settings import BrokerSettings

    configure("INFO" if args.verbose else "WARNING")
    if not args.verbose:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL + 1)
    prefix = f"calcstream {args.command}"
    try:
        overrides = {"bootstrap_servers": args.bootstrap} if args.bootstrap else {}
        settings = BrokerSettings(**overrides)
        return asyncio.run(_main_of(command, settings))
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"{prefix}: bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}",
              file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KafkaError as exc:
        print(f"{prefix}: Kafka error: {exc!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`calcstream tail | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


async def _main_of(command: Callable[[BrokerSettings], Awaitable[int]],
                   settings: BrokerSettings) -> int:
    return await command(settings)


def _ingest(args: argparse.Namespace) -> int:
    from calcstream.cli.ingest import IngestOptions, ingest, summary, write_missing
    from calcstream.cli.sources import open_source

    options = IngestOptions(results=args.results, timeout=args.timeout,
                            window=args.window, connect_timeout=args.connect_timeout,
                            progress=not args.no_progress, via_api=args.via_api,
                            api_key=os.environ.get("CALCSTREAM_API_KEY") or None)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async def command(settings: BrokerSettings) -> int:
        source = open_source(args.file, args.format, op=args.op, args=args.args,
                             id_prefix=args.id_prefix)
        report = await ingest(settings, source, options)
        summary(report, args.via_api or settings.requests_topic, args.results, say)
        if args.results is not None:
            write_missing(report, args.results)
        return 0 if report.ok else 1

    return _run_client(args, command)


def _tail(args: argparse.Namespace) -> int:
    from rich.console import Console

    from calcstream.cli.tail import TailOptions, tail

    options = TailOptions(statuses=frozenset(args.status or ()), ops=frozenset(args.op or ()),
                          dlq=args.dlq, from_beginning=args.from_beginning, limit=args.limit,
                          json=args.json, connect_timeout=args.connect_timeout)
    console = Console(highlight=False, soft_wrap=True)

    def emit(line: str) -> None:
        if args.json:
            print(line, flush=True)
        else:
            console.print(line)

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return _run_client(args, lambda settings: tail(settings, options, emit, note))


def _submit(args: argparse.Namespace) -> int:
    import orjson

    from calcstream.cli.submit import build_request, submit

    async def command(settings: BrokerSettings) -> int:
        request = build_request(args.op, args.data, args.args, request_id=args.id,
                                deadline_in=args.deadline)
        doc = await submit(settings, request, timeout=args.timeout,
                           connect_timeout=args.connect_timeout)
        if args.json:
            print(orjson.dumps(doc).decode(), flush=True)
        elif doc.get("status") == "ok":
            print(orjson.dumps(doc.get("result")).decode(), flush=True)
        if doc.get("status") == "ok":
            return 0
        if not args.json:
            error = doc.get("error") or {}
            print(f"{doc.get('status')}: {error.get('code')}: {error.get('message')}",
                  file=sys.stderr)
        return 1

    return _run_client(args, command)

