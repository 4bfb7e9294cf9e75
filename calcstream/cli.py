"""The ``calcstream`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from calcstream.logs import configure


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run a subcommand."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcstream",
        description="CPU-heavy NumPy work behind an async API, with Kafka in the middle.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    dev = sub.add_parser(
        "dev", help="run the whole stack locally: embedded broker, topics, worker(s), API",
        description="Start the embedded Kafka-compatible broker (unless "
        "CALCSTREAM_BOOTSTRAP_SERVERS names one), create the topics, start the worker(s) and "
        "the API. Ctrl-C stops everything cleanly.",
    )
    dev.add_argument("--broker-port", type=int, default=9092, help="embedded broker port (9092)")
    dev.add_argument("--host", default="127.0.0.1", help="API bind address (127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="API port (8000)")
    dev.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    dev.add_argument("--partitions", type=int, default=4, help="partitions per topic (4)")
    dev.add_argument("--no-api", action="store_true", help="do not start the API")
    dev.set_defaults(func=_dev)

    worker = sub.add_parser(
        "worker", help="run one worker (settings from CALCSTREAM_* variables)",
        description="Consume the request topic, compute, publish results, commit. SIGTERM or "
        "SIGINT drains in-flight batches and exits 0.",
    )
    worker.set_defaults(func=_worker)

    broker = sub.add_parser("broker", help="run only the embedded broker (in memory)")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(func=_broker)

    schema = sub.add_parser("schema", help="write the wire contracts as JSON Schema files")
    schema.add_argument("--out", type=Path, default=Path("schemas/jsonschema"))
    schema.add_argument("--check", action="store_true",
                        help="exit 1 if the files differ from the models instead of writing")
    schema.set_defaults(func=_schema)

    ops = sub.add_parser("ops", help="list the registered ops and their arguments")
    ops.set_defaults(func=_ops)
    return parser


def _dev(args: argparse.Namespace) -> int:
    from calcstream.devstack import DevOptions, DevStack

    configure("INFO")
    stack = DevStack(DevOptions(broker_port=args.broker_port, api_host=args.host,
                                api_port=args.port, workers=args.workers,
                                partitions=args.partitions, with_api=not args.no_api))
    try:
        stack.start()
        return stack.wait()
    finally:
        stack.stop()


def _worker(args: argparse.Namespace) -> int:
    from consumer.__main__ import main as worker_main

    worker_main()
    return 0


def _broker(args: argparse.Namespace) -> int:
    import signal

    from calcstream.broker import EmbeddedBroker

    configure("INFO")
    with EmbeddedBroker(args.port) as broker:
        print(f"embedded broker on {broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
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
    from consumer.ops import catalogue

    for op in catalogue():
        props = op["args"].get("properties", {})
        arglist = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items()) or "-"
        print(f"{op['name']:<16} args({arglist})  {op['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
