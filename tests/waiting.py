"""Waiting for a state that nothing announces: check it often, give up after a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], bool], timeout: float = 10.0,
                what: str = "the condition") -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` naming ``what`` after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - in-process state without an event
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise TimeoutError(f"{what} did not happen within {timeout:g}s") from None


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0,
                     what: str = "the condition") -> None:
    """``until`` for a condition that must be asked over the network (an HTTP answer)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - a state asked over the network
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"{what} did not happen within {timeout:g}s") from None
