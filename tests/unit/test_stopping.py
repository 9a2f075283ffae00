"""A stop signal reaches kopf even while asyncio's self-pipe is full (real signals, a real loop).

The child below does what a busy operator does: its loop is held up while threads hand it
results by the thousand (``call_soon_threadsafe``, one self-pipe byte each), and it waits for a
stop as kopf does, through ``loop.add_signal_handler`` and through its ``stop_flag``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

OPERATOR_SOURCES = Path(__file__).resolve().parents[2] / "operator"
CHILD = r"""
import asyncio, signal, sys, threading
from kuberank.operator.stopping import StopOnSignal

stopping = StopOnSignal() if sys.argv[1] == "stop-on-signal" else None
if stopping is not None:
    stopping.hand_over()


async def main() -> None:
    loop = asyncio.get_running_loop()
    signalled = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, signalled.set_result, "signal")  # as kopf does
    waits = [signalled]
    if stopping is not None:  # kopf's stop_flag, a threading.Event, waited for in a thread
        waits.append(asyncio.ensure_future(loop.run_in_executor(None, stopping.flag.wait)))

    def flood() -> None:
        for _ in range(20_000):
            loop.call_soon_threadsafe(lambda: None)

    def busy() -> None:  # the loop is held here while the threads fill its self-pipe
        threads = [threading.Thread(target=flood) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print("flooded", flush=True)
        sys.stdin.readline()  # the parent has sent SIGTERM

    loop.call_soon(busy)
    done, _ = await asyncio.wait(waits, timeout=3, return_when=asyncio.FIRST_COMPLETED)
    print("stopped" if done else "missed", flush=True)


asyncio.run(main())
"""


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(OPERATOR_SOURCES), os.environ.get("PYTHONPATH", "")])}


def _signalled_while_flooded(mode: str) -> tuple[str, str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_child_env())
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "flooded"
    child.send_signal(signal.SIGTERM)
    child.stdin.write("sent\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=30)
    return out.strip(), err


def test_sigterm_stops_even_when_the_loop_s_self_pipe_is_full() -> None:
    out, err = _signalled_while_flooded("stop-on-signal")
    assert out == "stopped", err


def test_asyncio_s_own_handler_loses_it_in_that_case() -> None:
    """Why ``StopOnSignal`` exists, and proof that the case above is the losing one: this
    CPython drops the signal's byte on the full pipe (if it ever stops doing so, the thread may
    go)."""
    out, err = _signalled_while_flooded("asyncio")
    assert out == "missed" and "signal wakeup fd" in err, (out, err)


def test_before_kopf_runs_a_stop_signal_ends_the_process_at_once() -> None:
    """A standby waiting for the Lease has nothing to stop gracefully: it exits as the
    signal's default action would (128 + 15), not after the grace period."""
    code = ("import sys, time\nfrom kuberank.operator.stopping import StopOnSignal\n"
            "StopOnSignal()\nprint('waiting', flush=True)\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=_child_env())
    assert child.stdout is not None and child.stdout.readline().strip() == "waiting"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 128 + signal.SIGTERM
