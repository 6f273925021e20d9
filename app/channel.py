"""A bounded hand-off between pipeline threads: blocking (back-pressure) or dropping the oldest item."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """get() on a channel that is closed and empty."""


class Channel(Generic[T]):
    """FIFO of at most `capacity` items.

    With ``drop_oldest`` a put into a full channel evicts the oldest item (counted in ``dropped``) so a
    slow consumer always gets the freshest data: the latest-frame semantics of a live camera.
    Without it, put() blocks until there is room (back-pressure, for files read as fast as possible).
    """

    __slots__ = ("_closed", "_cond", "_items", "capacity", "drop_oldest", "dropped")

    def __init__(self, capacity: int, drop_oldest: bool = False) -> None:
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def put(self, item: T) -> T | None:
        """Add an item; returns the evicted item in drop mode (else None). No-op once closed."""
        with self._cond:
            evicted = None
            if self.drop_oldest:
                if len(self._items) >= self.capacity:
                    evicted = self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self._closed:
                    self._cond.wait()
            if self._closed:
                return None
            self._items.append(item)
            self._cond.notify_all()
            return evicted

    def get(self) -> T:
        """Next item, waiting for one; raises Closed once closed and drained."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed
                self._cond.wait()
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more puts; consumers drain what is left, then get Closed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)
