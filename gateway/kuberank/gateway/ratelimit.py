"""Per-key token buckets for requests/minute and tokens/minute.

With several gateway replicas each enforces its share of every key's limits (``Limits.share``,
1 / the number of ready gateway replicas), so a key gets its limit in all, not once per replica,
as long as the Service spreads its requests evenly; the ``x-ratelimit-*`` headers report the
key's whole limit, scaled back up from this replica's share.

Pure: the clock is injected, nothing here sleeps or does I/O. A request costs one request token
up front. Its token cost is only known from the runtime's usage after it ran, so the token bucket
is estimated from the request's text, reserved at admission (it must be there, or the bucket
must be full for one larger than it holds) and settled with the runtime's count after, possibly
into debt; the debt then delays the key's next request, which is how a per-minute token budget
holds over time. Reserving first keeps a burst of concurrent requests from all being admitted
against the same tokens.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

Clock = Callable[[], float]


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled continuously at ``capacity`` per ``period`` s."""

    def __init__(self, capacity: float, period: float, clock: Clock, *, full: bool = True) -> None:
        if capacity <= 0 or period <= 0:
            raise ValueError("capacity and period must be positive")
        self.capacity = capacity
        self.rate = capacity / period
        self._clock = clock
        self._level = capacity if full else 0.0
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._level = min(self.capacity, self._level + elapsed * self.rate)

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` tokens are available (0 when they are now)."""
        self._refill()
        missing = amount - self._level
        return 0.0 if missing <= 0 else missing / self.rate

    def try_take(self, amount: float = 1.0) -> float:
        """Take ``amount`` tokens and return 0, or take nothing and return the seconds to wait."""
        wait = self.wait_for(amount)
        if wait == 0.0:
            self._level -= amount
        return wait

    def debit(self, amount: float) -> None:
        """Take ``amount`` tokens unconditionally; the level may go negative (debt). A negative
        amount gives tokens back (a reservation that was more than the use), up to full."""
        self._refill()
        self._level = min(self.capacity, self._level - amount)

    @property
    def used(self) -> float:
        """Tokens short of full (more than the capacity when in debt)."""
        return self.capacity - self.level


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    share: float = 1.0  # this gateway replica's part of them: 1 / ready gateway replicas

    def shared(self, replicas: int) -> Limits:
        return replace(self, share=1.0 / max(1, replicas))

    @property
    def concurrent_here(self) -> int | None:
        """This replica's part of the cap on requests in flight, rounded up (a cap below the
        number of replicas would otherwise admit nothing anywhere)."""
        if self.concurrent_requests is None:
            return None
        return max(1, math.ceil(self.concurrent_requests * self.share - 1e-9))


class InFlight:
    """Requests in flight per ApiKey (``KeyRecord.identity``), against its cap. Event loop
    only."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def enter(self, identity: str, cap: int | None) -> bool:
        """Count one more request of the key ``identity``; False (nothing counted) at its cap."""
        count = self._counts.get(identity, 0)
        if cap is not None and count >= cap:
            return False
        self._counts[identity] = count + 1
        return True

    def leave(self, identity: str) -> None:
        left = self._counts.get(identity, 0) - 1
        if left > 0:
            self._counts[identity] = left
        else:
            self._counts.pop(identity, None)

    def __len__(self) -> int:
        return len(self._counts)


@dataclass
class _KeyBuckets:
    limits: Limits
    requests: TokenBucket | None
    tokens: TokenBucket | None

    def at_rest(self) -> bool:
        """Both buckets full: the same state a fresh entry starts in, so it can be dropped."""
        return all(b is None or b.level >= b.capacity for b in (self.requests, self.tokens))


@dataclass(frozen=True)
class Allowance:
    """What is left of one per-minute limit: whole units now, seconds until full again."""

    limit: int
    remaining: int
    reset_s: float

    @classmethod
    def of(cls, bucket: TokenBucket, limit: int, share: float) -> Allowance:
        """The key's whole allowance, estimated from this replica's ``share`` of it."""
        level = bucket.level
        # What this replica admits now (whole units: a 429 says 0), for the whole key.
        here = max(0, math.floor(level + 1e-9))
        return cls(limit, min(limit, math.floor(here / share + 1e-9)),
                   max(0.0, bucket.capacity - level) / bucket.rate)


@dataclass(frozen=True)
class Quota:
    """A key's allowances (None where the key has no such limit)."""

    requests: Allowance | None = None
    tokens: Allowance | None = None


def quota_headers(quota: Quota) -> dict[str, str]:
    """OpenAI-style ``x-ratelimit-*`` headers, so clients can pace themselves before a 429."""
    headers: dict[str, str] = {}
    for kind, allowance in (("requests", quota.requests), ("tokens", quota.tokens)):
        if allowance is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(allowance.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(allowance.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = f"{math.ceil(allowance.reset_s)}s"
    return headers


def retry_after_seconds(wait: float) -> int:
    """A Retry-After header value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


SWEEP_INTERVAL_S = 60.0


def _used(bucket: TokenBucket | None, share: float) -> float:
    """What a key used of a bucket holding ``share`` of its limit, in whole-key units."""
    return 0.0 if bucket is None else bucket.used / share


def _carried(used: float, old: int | None, new: int | None) -> float:
    """What a key's new bucket starts having used: all of it (debt included) when its limit
    stays or rises, at most a minute of a lowered one, so lowering a limit refuses a busy key
    for a minute at most rather than for all it used under the old one (10 a minute used,
    lowered to 2: four minutes)."""
    if new and old and new < old:
        return min(used, float(new))
    return used


class RateLimiter:
    """Buckets per key; a key's buckets are rebuilt when its limits or its share change, keeping
    what it has used (debt included), counted in whole-key units: raising a limit gives room at
    once, and a gateway replica joining or leaving neither refills nor drains anyone.

    Memory stays bounded by the keys used in about the last minute: once a minute, entries whose
    buckets have refilled completely are dropped (a full bucket behaves exactly like a new one),
    so rotated, deleted and idle keys leave nothing behind.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, _KeyBuckets] = {}
        self._swept = clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def _sweep_locked(self) -> None:
        now = self._clock()
        if now - self._swept < SWEEP_INTERVAL_S:
            return
        self._swept = now
        for identity in [k for k, entry in self._keys.items() if entry.at_rest()]:
            del self._keys[identity]

    def _buckets(self, identity: str, limits: Limits) -> _KeyBuckets:
        entry = self._keys.get(identity)
        if entry is None:
            entry = _KeyBuckets(limits, self._bucket(limits.requests_per_minute, limits.share),
                                self._bucket(limits.tokens_per_minute, limits.share))
        elif entry.limits != limits:
            share, old = entry.limits.share, entry.limits
            entry = _KeyBuckets(
                limits,
                self._bucket(limits.requests_per_minute, limits.share, _carried(
                    _used(entry.requests, share), old.requests_per_minute,
                    limits.requests_per_minute)),
                self._bucket(limits.tokens_per_minute, limits.share, _carried(
                    _used(entry.tokens, share), old.tokens_per_minute, limits.tokens_per_minute)),
            )
        self._keys[identity] = entry
        return entry

    def _bucket(self, per_minute: int | None, share: float,
                used: float = 0.0) -> TokenBucket | None:
        """Refills this replica's share per minute; holds at least one unit, so a share below
        one request a minute still admits a request now and then instead of never. ``used`` is
        what the key had used (whole-key units) under its previous limits."""
        if not per_minute:
            return None
        rate = per_minute * share
        capacity = max(1.0, rate)
        bucket = TokenBucket(capacity, 60.0 * capacity / rate, self._clock)
        if used > 0:
            bucket.debit(used * share)
        return bucket

    def admit(self, identity: str, limits: Limits, tokens: int = 0) -> float:
        """Admit one request (consuming a request token and reserving its estimated ``tokens``)
        and return 0, or return seconds to wait. A request needing more tokens than the bucket
        holds is admitted when it is full. A refused request spends nothing."""
        with self._lock:
            self._sweep_locked()
            entry = self._buckets(identity, limits)
            if entry.tokens is not None:
                wait = entry.tokens.wait_for(min(max(tokens, 1), entry.tokens.capacity))
                if wait > 0:
                    return wait
            if entry.requests is not None:
                wait = entry.requests.try_take(1.0)
                if wait > 0:
                    return wait
            if entry.tokens is not None and tokens > 0:
                entry.tokens.debit(float(tokens))
            return 0.0

    def quota(self, identity: str, limits: Limits) -> Quota:
        """The key's allowances now (full ones for a key not seen lately)."""
        with self._lock:
            entry = self._buckets(identity, limits)
            share = limits.share
            return Quota(
                requests=(Allowance.of(entry.requests, limits.requests_per_minute or 0, share)
                          if entry.requests is not None else None),
                tokens=(Allowance.of(entry.tokens, limits.tokens_per_minute or 0, share)
                        if entry.tokens is not None else None),
            )

    def charge_tokens(self, identity: str, tokens: int, limits: Limits, reserved: int = 0) -> None:
        """Settle a finished request: debit the tokens it used beyond what ``admit`` reserved,
        or give back what it did not use (all of it for a request that failed). Fresh buckets
        if the key's were swept while it ran: a full bucket and a new one are the same."""
        with self._lock:
            entry = self._buckets(identity, limits)
            if entry.tokens is not None and tokens != reserved:
                entry.tokens.debit(float(tokens - reserved))


CHARS_PER_TOKEN = 4  # English text through a WordPiece or SentencePiece vocabulary, roughly
PAIR_TOKENS = 4  # the special tokens around each pair


def estimated_tokens(query: str, documents: Sequence[str]) -> int:
    """Tokens a request will likely use: each document is scored with the query (the runtime
    counts the exact number, settled after)."""
    per_query = len(query) // CHARS_PER_TOKEN + PAIR_TOKENS
    return sum(per_query + len(d) // CHARS_PER_TOKEN for d in documents)
