"""local/bounded_wait.py: the relay's waits end when they say, whatever cancellation does."""

from __future__ import annotations

import asyncio

from jupyter_colab_tunnel.local.bounded_wait import event_set, finished_within


def test_work_that_swallows_its_cancellation_is_given_up_on_at_the_timeout() -> None:
    swallowed = 0

    async def stubborn() -> None:
        # Like tornado's serving loop (it returns on CancelledError) holding a closing
        # connection: asyncio.wait_for(stubborn(), t) never returns.
        nonlocal swallowed
        for _ in range(2):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1

    async def main() -> None:
        assert not await asyncio.wait_for(finished_within(stubborn(), 0.05), 5)
        assert await finished_within(asyncio.sleep(0), 5)

    asyncio.run(main())
    assert swallowed == 2  # once by finished_within, once when asyncio.run ended the loop


def test_a_loop_of_timed_waits_ends_when_its_task_is_cancelled_even_at_the_timeout() -> None:
    async def watch(event: asyncio.Event) -> None:
        while True:  # as the relay's probes do: wait a period, look again, until cancelled
            await event_set(event, 0.002)

    async def main() -> None:
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for i in range(200):
            task = asyncio.ensure_future(watch(event))
            # Cancelled around the moment a wait times out (before, at, after).
            loop.call_later(0.002 + (i % 5 - 2) * 0.0005, task.cancel)
            done, _ = await asyncio.wait((task,), timeout=5)
            assert done, f"round {i}: the watch went on after its cancellation"
            assert task.cancelled()
        assert await event_set(event, 0) is False
        event.set()
        assert await event_set(event, 5) is True

    asyncio.run(main())
