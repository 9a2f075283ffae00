"""Records of watched objects by (namespace, name), grouped by a key of each as well.

The key table finds records by key id and the routing table finds EndpointSlices by Service;
both must drop a record from its group when its object is deleted, moves to another group or is
missing from a relist. One structure keeps the two views in step. Not thread-safe: its owner
holds its own lock around every call.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, ValuesView
from typing import Generic, Protocol, TypeVar

Where = tuple[str, str]  # (namespace, name)


class Named(Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=Named)
G = TypeVar("G", bound=Hashable)


class Grouped(Generic[R, G]):
    """Records by where their object is, and by ``group_of(record)``."""

    def __init__(self, group_of: Callable[[R], G]) -> None:
        self._group_of = group_of
        self._by_where: dict[Where, R] = {}
        self._groups: dict[G, dict[Where, R]] = {}

    def __len__(self) -> int:
        return len(self._by_where)

    def values(self) -> ValuesView[R]:
        return self._by_where.values()

    def group(self, key: G) -> list[R]:
        return list(self._groups.get(key, {}).values())

    def put(self, record: R) -> None:
        """Add or replace the record of ``record``'s object (leaving its old group if moved)."""
        where = (record.namespace, record.name)
        self.drop(where)
        self._by_where[where] = record
        self._groups.setdefault(self._group_of(record), {})[where] = record

    def drop(self, where: Where) -> None:
        old = self._by_where.pop(where, None)
        if old is None:
            return
        key = self._group_of(old)
        members = self._groups[key]
        del members[where]
        if not members:
            del self._groups[key]

    def replace(self, records: Iterable[R], stale: Callable[[Where, R], bool]) -> None:
        """A relist: drop the records ``stale`` says the list covers, then put the list's."""
        for where in [w for w, r in self._by_where.items() if stale(w, r)]:
            self.drop(where)
        for record in records:
            self.put(record)
