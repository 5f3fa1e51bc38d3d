"""The worker's in-flight budget: bounded, first come first served, and never abandons a send."""

from __future__ import annotations

import asyncio

import pytest

from workers.in_flight import InFlightBudget


async def test_reservations_are_bounded_and_served_in_arrival_order() -> None:
    budget = InFlightBudget(10)
    await budget.acquire(8)
    order: list[str] = []

    async def take(name: str, count: int) -> None:
        await budget.acquire(count)
        order.append(name)

    big = asyncio.create_task(take("big", 10))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 2))  # would fit now, but arrived second
    await asyncio.sleep(0)
    assert order == []
    assert budget.in_use == 8
    budget.release(8)
    await big
    assert order == ["big"]
    assert budget.in_use == 10
    budget.release(10)
    await small
    assert order == ["big", "small"]
    with pytest.raises(ValueError, match="cannot reserve 11 of 10"):
        await budget.acquire(11)


async def test_work_started_is_finished_and_counted_even_if_its_job_is_cancelled() -> None:
    budget = InFlightBudget(5)
    release_send = asyncio.Event()
    recorded: list[int] = []

    async def send_and_record() -> int:
        await release_send.wait()  # the provider is still answering
        recorded.append(3)
        return 3

    job = asyncio.create_task(budget.run(3, send_and_record))
    await asyncio.sleep(0.01)
    job.cancel()  # arq's job timeout, or a shutdown
    with pytest.raises(asyncio.CancelledError):
        await job
    assert budget.in_use == 3  # still outstanding: the sends are on the wire
    release_send.set()
    await budget.acquire(5)  # granted only once the abandoned chunk gave its 3 back
    assert recorded == [3]  # recorded all the same


async def test_a_job_cancelled_while_waiting_for_the_budget_starts_nothing() -> None:
    budget = InFlightBudget(4)
    await budget.acquire(4)
    started: list[str] = []

    async def work() -> None:
        started.append("work")

    waiting = asyncio.create_task(budget.run(2, work))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.release(4)
    assert budget.in_use == 0
    await budget.run(4, work)  # nobody left in the queue ahead of it
    assert started == ["work"]


async def test_a_stopping_worker_waits_for_what_is_in_flight_and_no_longer() -> None:
    budget = InFlightBudget(4)
    assert await budget.wait_idle(0.01)  # nothing in flight
    await budget.acquire(3)
    assert not await budget.wait_idle(0.05)  # still out after the grace: it says so
    asyncio.get_running_loop().call_later(0.02, budget.release, 3)
    assert await budget.wait_idle(5)
    assert budget.in_use == 0
