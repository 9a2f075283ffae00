"""Per-object locks of the operator's handlers: one object's writers take turns, other objects'
go on, and nothing is left behind once nobody holds a lock (objects come and go)."""

from __future__ import annotations

import threading

import pytest
from kuberank.operator.handlers.common import KeyedLocks

from tests.polling import wait_for

pytestmark = pytest.mark.unit


def test_one_objects_holders_take_turns_and_the_lock_goes_with_the_last() -> None:
    locks, order = KeyedLocks(), []
    entered = threading.Event()

    def second() -> None:
        with locks.hold(("ns", "a")):
            order.append("second")
            entered.set()

    with locks.hold(("ns", "a")):
        thread = threading.Thread(target=second)
        thread.start()
        wait_for("the second holder to wait", lambda: locks._locks[("ns", "a")][1] == 2,
                 timeout=10, interval=0.01)
        order.append("first")
        assert not entered.is_set()
    thread.join(timeout=10)
    assert order == ["first", "second"] and len(locks) == 0


def test_other_objects_are_not_held_up() -> None:
    locks = KeyedLocks()
    with locks.hold(("ns", "a")), locks.hold(("ns", "b")), locks.hold(("other", "a")):
        assert len(locks) == 3
    assert len(locks) == 0


def test_a_failing_holder_lets_go() -> None:
    locks = KeyedLocks()
    with pytest.raises(RuntimeError), locks.hold(("ns", "a")):
        raise RuntimeError("handler failed")
    assert len(locks) == 0
    with locks.hold(("ns", "a")):
        pass
