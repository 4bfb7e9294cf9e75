"""Large steps on the API's event loop take turns with everything else (producer_api/turns.py)."""

from __future__ import annotations

import asyncio

from producer_api.turns import Turns
from tests.producer_api.helpers import Passes


async def test_large_steps_that_are_ready_together_run_in_different_passes() -> None:
    turns, passes = Turns(large_bytes=1_000), Passes()
    ran: dict[str, int] = {}

    def note(name: str) -> str:
        ran[name] = passes.count
        return name

    async def step(name: str, size: int) -> str:
        return await turns.run(size, lambda: note(name))

    # Four large steps and two small ones, all ready in the same pass.
    names = await asyncio.gather(*(step(f"large-{i}", 5_000) for i in range(4)),
                                 step("small-0", 10), step("small-1", 999))

    assert names == ["large-0", "large-1", "large-2", "large-3", "small-0", "small-1"]
    large = [ran[f"large-{i}"] for i in range(4)]
    assert large == sorted(large) and len(set(large)) == 4, ran  # in order, one per pass
    assert ran["small-0"] == ran["small-1"] == ran["large-0"], ran  # small ones never wait


async def test_a_step_that_fails_hands_the_turn_on() -> None:
    turns = Turns(large_bytes=1)

    def fail() -> None:
        raise ValueError("unreadable")

    results = await asyncio.gather(turns.run(10, fail), turns.run(10, lambda: "read"),
                                   return_exceptions=True)

    assert isinstance(results[0], ValueError) and results[1] == "read"
