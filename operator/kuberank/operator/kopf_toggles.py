"""kopf's readiness toggles, woken only when their verdict changes.

At start-up kopf holds back every object's handlers until each indexed object has been indexed:
each object's worker waits on one ``ToggleSet`` while a toggle per indexed object is made and
dropped, and kopf 1.45 wakes every waiting worker at each of those steps, each to re-check the
whole set. With N objects that is N² wake-ups: a restarted operator or a new leader handled
nothing for 25 s at 500 models and 500 keys, 175 s at 1,400 models and 900 keys, at 100 % of a
core. A waiter cares only about the set's verdict (``all`` or ``any`` of its toggles), so the set
wakes its waiters when a toggle made or dropped changes that verdict, and not otherwise: the same
waits end at the same moments, with N wake-ups. A toggle turned on or off still wakes everyone
(kopf's own ``Toggle.turn_to``, used by the pause toggles, of which there are few).

``install()`` replaces the three methods on kopf's class, once, on the kopf minor versions this
was read against; others are left alone (start-up is then slow at scale, not wrong).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import version
from typing import Any

from kopf._cogs.aiokits import aiotoggles

_INSTALLED = "_kuberank_wakes_on_change"
READ_AGAINST = ("1.45.",)  # kopf versions whose aiotoggles.ToggleSet this mirrors


async def _make_toggle(self: aiotoggles.ToggleSet, __val: bool = False, *,
                       name: str | None = None) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    await _drop_toggles(self, [toggle])


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def _looks_as_expected(cls: Any) -> bool:
    probe = aiotoggles.ToggleSet(all)
    return all(hasattr(cls, m) for m in ("make_toggle", "drop_toggle", "drop_toggles", "is_on")) \
        and isinstance(getattr(probe, "_toggles", None), set) \
        and hasattr(getattr(probe, "_condition", None), "notify_all")


def read_against(kopf_version: str) -> bool:
    """Whether this mirrors that kopf version's ``ToggleSet`` (its minor version was read)."""
    return kopf_version.startswith(READ_AGAINST)


def install(kopf_version: str | None = None) -> bool:
    """Patch kopf's ``ToggleSet`` (idempotent); False, changing nothing, for a kopf this was
    not read against."""
    cls = aiotoggles.ToggleSet
    if getattr(cls, _INSTALLED, False):
        return True
    if not read_against(kopf_version or version("kopf")) or not _looks_as_expected(cls):
        return False
    cls.make_toggle = _make_toggle  # type: ignore[method-assign]
    cls.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    cls.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    setattr(cls, _INSTALLED, True)
    return True
