"""A small bounded, thread-safe map for the engine's memoised look-ups.

The engine keeps one working calendar per (pathway id, version, site) it has been asked about.
Sites are names a host chooses, so over a long life the set can grow without end; this map keeps
the most recently used ``maxsize`` entries and forgets the rest (they are rebuilt on demand:
what is cached is a pure function of its key).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["CALENDARS_KEPT", "BoundedCache"]

#: How many site calendars an engine keeps (each is small; rebuilding one is cheap).
CALENDARS_KEPT = 256

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``maxsize`` entries; the least recently used goes first when it is full."""

    __slots__ = ("_entries", "_lock", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The entry for ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` for ``key`` unless another thread got there first; return the kept one."""
        with self._lock:
            kept = self._entries.setdefault(key, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
            return kept

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
