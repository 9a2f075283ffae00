"""Stopping the operator on SIGTERM (real signals, real asyncio loops, real kopf, in child
processes): the signal is not lost while the loop's self-pipe is full, a kopf that ends by itself
still ends the process, and a second signal or a stop that hangs ends it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

OPERATOR_SOURCES = Path(__file__).resolve().parents[2] / "operator"
TERMINATED = 128 + signal.SIGTERM

# What a busy operator does: its loop is held up while threads hand it results by the thousand
# (call_soon_threadsafe, one self-pipe byte each), and it waits for a stop as kopf does, through
# loop.add_signal_handler and, with StopOnSignal, through the stop flag it attached.
FLOODED = r"""
import asyncio, signal, sys, threading
from kuberank.operator.stopping import StopOnSignal

stopping = StopOnSignal() if sys.argv[1] == "stop-on-signal" else None


async def main() -> None:
    loop = asyncio.get_running_loop()
    signalled = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, signalled.set_result, "signal")  # as kopf does
    waits = [signalled]
    if stopping is not None:
        waits.append(asyncio.ensure_future(stopping.attach(loop).wait()))

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
    done, _ = await asyncio.wait(waits, timeout=8, return_when=asyncio.FIRST_COMPLETED)
    print("stopped" if done else "missed", flush=True)


asyncio.run(main())
"""


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(OPERATOR_SOURCES), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


def _signalled_while_flooded(mode: str) -> tuple[str, str]:
    child = _child(FLOODED, mode)
    assert child.stdin is not None and _line(child) == "flooded"
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
    child = _child("import time\nfrom kuberank.operator.stopping import StopOnSignal\n"
                   "StopOnSignal()\nprint('waiting', flush=True)\ntime.sleep(60)\n")
    assert _line(child) == "waiting"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == TERMINATED


def test_a_kopf_that_ends_by_itself_ends_the_process() -> None:
    """kopf ending without a signal (here a startup handler that gives up; in a cluster a failed
    login or a crashed task) must return, so the Lease is handed over: with a threading.Event
    as the stop flag, asyncio.run waited for ever for the executor thread that waited on it."""
    code = ("import kopf\nfrom kuberank.operator.stopping import StopOnSignal, run_kopf\n"
            "@kopf.on.startup()\ndef fail(**_):\n    raise kopf.PermanentError('no')\n"
            "stopping = StopOnSignal()\n"
            "try:\n    run_kopf(stopping, standalone=True, clusterwide=True)\n"
            "finally:\n    print('returned', flush=True)\n")
    child = _child(code)
    out, err = child.communicate(timeout=60)
    assert out.strip() == "returned" and child.returncode == 1, (out, err[-2000:])


STOP_HANGS = r"""
import asyncio, sys
from kuberank.operator.stopping import StopOnSignal

stopping = StopOnSignal(grace_seconds=float(sys.argv[1]))


async def main() -> None:
    stop = stopping.attach(asyncio.get_running_loop())
    print("running", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    await asyncio.sleep(60)  # a graceful stop that hangs


asyncio.run(main())
"""


def test_a_second_signal_ends_a_stop_that_hangs() -> None:
    child = _child(STOP_HANGS, "600")
    assert _line(child) == "running"
    child.send_signal(signal.SIGTERM)
    assert _line(child) == "stopping"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == TERMINATED


def test_a_stop_that_hangs_past_its_grace_ends_the_process() -> None:
    child = _child(STOP_HANGS, "1")
    assert _line(child) == "running"
    began = time.monotonic()
    child.send_signal(signal.SIGTERM)
    assert _line(child) == "stopping"
    assert child.wait(timeout=20) == TERMINATED
    assert time.monotonic() - began >= 1.0
