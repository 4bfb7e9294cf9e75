"""``calcstream submit``: one request to the request topic, then wait for its result."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from calcstream.cli import kafka_io
from calcstream.cli.errors import BrokerDown, InputError, ResultTimeout
from core.producers import stop_producer
from core.settings import BrokerSettings
from schemas import ops
from schemas.encoding import encode_json
from schemas.messages import CalcRequest


def build_request(op: str, data: Sequence[float], args: Mapping[str, Any] | None = None, *,
                  request_id: str | None = None, deadline_in: float | None = None) -> CalcRequest:
    """A validated request; ``InputError`` says what is wrong with the arguments."""
    now = time.time()
    try:
        request = CalcRequest(
            id=request_id or uuid.uuid4().hex, op=op, data=list(data), args=dict(args or {}),
            submitted_at=now, deadline=None if deadline_in is None else now + deadline_in,
        )
        ops.get(op).parse(len(request.data), request.args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{where}: {first['msg']}") from None
    except ops.OpInputError as exc:
        raise InputError(str(exc)) from None
    return request


async def submit(settings: BrokerSettings, request: CalcRequest, *, timeout: float,
                 connect_timeout: float = 3.0) -> dict[str, Any]:
    """Send ``request`` (acks=all) and return its result document from the reply topic."""
    topics = settings.topics
    await kafka_io.preflight(settings, [topics.requests, topics.results], connect_timeout)
    follower = kafka_io.TopicFollower(settings, [topics.results], from_beginning=False)
    producer = kafka_io.producer(settings, linger_ms=0)
    try:
        await follower.start()
        await producer.start()
        await producer.send_and_wait(topics.requests, key=request.id.encode(),
                                     value=encode_json(request))
        async with asyncio.timeout(timeout):
            return await _wait_for(follower, request.id)
    except TimeoutError:
        raise ResultTimeout(f"no result for {request.id} within {timeout:g}s "
                            "(is a worker running?)") from None
    except KafkaError as exc:
        raise BrokerDown(f"talking to {settings.bootstrap_servers} failed: {exc}") from None
    finally:
        await stop_producer(producer, connect_timeout)
        await follower.stop()


async def _wait_for(follower: kafka_io.TopicFollower, request_id: str) -> dict[str, Any]:
    key = request_id.encode()
    async for batch in follower.batches():
        for record in batch:
            if record.key == key:
                doc: dict[str, Any] = orjson.loads(record.value)
                return doc
    raise AssertionError("unreachable: a follower never stops on its own")
