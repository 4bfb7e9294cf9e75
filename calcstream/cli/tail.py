"""``calcstream tail``: follow the results topic (and the dead letters), one line per record."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from rich.markup import escape

from calcstream.cli import kafka_io
from core.settings import BrokerSettings
from schemas.encoding import DecodeError, is_result_frame, result_to_json
from schemas.messages import DeadLetterHeaders

_STYLES = {"ok": "green", "error": "red", "expired": "yellow", "dlq": "magenta"}
_VALUE_WIDTH = 48


@dataclass(frozen=True)
class TailOptions:
    """What to show."""

    statuses: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    dlq: bool = False
    from_beginning: bool = False
    limit: int | None = None
    json: bool = False
    connect_timeout: float = 3.0


async def tail(settings: BrokerSettings, options: TailOptions, emit: Callable[[str], None],
               note: Callable[[str], None]) -> int:
    """Print matching records as they arrive until ``limit`` lines were shown (or forever)."""
    topics = settings.topics
    followed = [topics.results] + ([topics.dlq] if options.dlq else [])
    await kafka_io.preflight(settings, followed, options.connect_timeout)
    follower = kafka_io.TopicFollower(settings, followed, from_beginning=options.from_beginning)
    shown = 0
    try:
        await follower.start()
        where = "the beginning" if options.from_beginning else "now"
        note(f"following {', '.join(followed)} from {where} (Ctrl-C stops)")
        async for batch in follower.batches():
            for record in batch:
                line: str | None
                if record.topic == topics.dlq:
                    line = format_dead_letter(record, options.json)
                else:
                    line = format_result(record.value, options)
                if line is None:
                    continue
                emit(line)
                shown += 1
                if options.limit is not None and shown >= options.limit:
                    return 0
    finally:
        await follower.stop()
    return 0


def format_result(value: bytes, options: TailOptions) -> str | None:
    """One line for a result (a binary one as its JSON document), or None when the filters
    leave it out."""
    try:
        if is_result_frame(value):
            value = result_to_json(value)
        doc = orjson.loads(value)
    except (orjson.JSONDecodeError, DecodeError):
        doc = None
    if not isinstance(doc, dict):
        if options.statuses or options.ops:
            return None
        return escape(f"unreadable result: {value[:80]!r}")
    status, op = str(doc.get("status")), str(doc.get("op"))
    if options.statuses and status not in options.statuses:
        return None
    if options.ops and op not in options.ops:
        return None
    if options.json:
        return value.decode()
    when = _clock(doc.get("completed_at"))
    style = _STYLES.get(status, "white")
    if status == "ok":
        outcome = _shorten(orjson.dumps(doc.get("result")).decode())
    else:
        error = doc.get("error") or {}
        outcome = f"{error.get('code', '?')}: {error.get('message', '')}"
    cached = " cached" if doc.get("cached") else ""
    detail = (f"batch {doc.get('batch_size', '?')}  queue {_ms(doc.get('queue_ms'))}  "
              f"compute {_ms(doc.get('compute_ms'))}{cached}  {doc.get('worker', '')}")
    return (f"[dim]{when}[/]  [{style}]{status:<7}[/]  {escape(op):<14}  "
            f"{escape(str(doc.get('id'))):<20}  {escape(outcome)}  [dim]{escape(detail)}[/]")


def format_dead_letter(record: Any, as_json: bool) -> str:
    """One line for a dead-letter record."""
    headers = list(record.headers or [])
    try:
        info: dict[str, Any] = DeadLetterHeaders.from_headers(headers).model_dump()
    except ValidationError:
        info = {k: v.decode(errors="replace") for k, v in headers}
    if as_json:
        doc: dict[str, Any] = {"dlq": info, "key": _text(record.key)}
        try:
            doc["value"] = record.value.decode() if record.value is not None else None
        except UnicodeDecodeError:
            doc["value_base64"] = base64.b64encode(record.value).decode()
        return orjson.dumps(doc).decode()
    when = _clock(record.timestamp / 1000)
    origin = (f"{info.get('original_topic', '?')}[{info.get('original_partition', '?')}]"
              f"@{info.get('original_offset', '?')}")
    reason = f"{info.get('error_class', '?')}: {info.get('error_message', '')}"
    return (f"[dim]{when}[/]  [{_STYLES['dlq']}]{'dlq':<7}[/]  "
            f"{escape(str(info.get('stage', '?'))):<14}  "
            f"{escape(str(info.get('request_id') or _text(record.key) or '-')):<20}  "
            f"{escape(_shorten(reason, 120))}  [dim]from {escape(origin)}[/]")


def _clock(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "--:--:--.---"
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S.%f")[:-3]


def _ms(value: object) -> str:
    return f"{value:.1f}ms" if isinstance(value, int | float) else "?"


def _shorten(text: str, width: int = _VALUE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")
