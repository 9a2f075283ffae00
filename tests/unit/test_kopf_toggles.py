"""kopf's readiness ToggleSet as kuberank patches it: waits end exactly when the set's verdict
changes, and a waiter is woken per change of verdict, not per toggle made or dropped."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles
from kuberank.operator import kopf_toggles


class _Counted(aiotoggles.ToggleSet):
    """Counts how often the verdict is asked: once per waiter woken, plus the setter's own."""

    looks = 0

    def is_on(self) -> bool:
        type(self).looks += 1
        return super().is_on()


def test_waiters_are_woken_once_when_the_last_toggle_goes_not_once_per_toggle() -> None:
    assert kopf_toggles.install() and kopf_toggles.install()  # idempotent

    async def scenario() -> tuple[list[bool], int]:
        indexed = _Counted(all)
        toggles = [await indexed.make_toggle(name=f"object {i}") for i in range(400)]
        waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(400)]
        await asyncio.sleep(0)  # every waiter is waiting now
        _Counted.looks = 0
        for toggle in toggles[:-1]:
            await indexed.drop_toggle(toggle)
            await asyncio.sleep(0)
        early = [w.done() for w in waiters]
        await indexed.drop_toggle(toggles[-1])
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
        return early, _Counted.looks

    early, looks = asyncio.run(scenario())
    assert not any(early)  # nobody went on while one object was not indexed yet
    # 399 + 1 drops look twice each, and each of 400 waiters looks once when woken: linear.
    # kopf's own set woke all 400 waiters at every drop: 400 * 400 = 160,000 looks.
    assert looks <= 2 * 400 + 400 + 10, looks


def test_a_verdict_that_changes_back_and_forth_wakes_the_waiters_of_each_side() -> None:
    kopf_toggles.install()

    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        assert paused.is_off()
        off_again = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        assert off_again.done()  # already off: no wait at all
        on = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        conflict = await paused.make_toggle(True, name="peering conflict")
        await asyncio.wait_for(on, timeout=5)
        quiet = await paused.make_toggle(False, name="another peering")
        off = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        assert not off.done()
        await conflict.turn_to(False)  # kopf's own Toggle still wakes everyone
        await asyncio.wait_for(off, timeout=5)
        on_again = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await quiet.turn_to(True)
        await asyncio.wait_for(on_again, timeout=5)
        off_at_last = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        await paused.drop_toggles([quiet, conflict])
        await asyncio.wait_for(off_at_last, timeout=5)

    asyncio.run(scenario())



def test_only_the_kopf_versions_it_mirrors_are_patched() -> None:
    assert kopf_toggles.read_against("1.45.2") and kopf_toggles.read_against("1.45.10")
    assert not any(map(kopf_toggles.read_against, ("1.46.0", "1.4.5", "2.0.0", "1.450.0")))
