"""Group commit for the threads of one server process: many concurrent judgments, one statement and one
commit.

``GroupCommit(flush).submit(item)`` is called by each request thread. A thread that finds no batch in
flight takes every item waiting (its own included) and runs ``flush(items)`` on its own database
connection: it leads that batch. Threads that arrive while a batch is in flight wait (without the
interpreter lock) and go in the next one, so under load the batches grow by themselves and the commit's
fixed cost (statement start, WAL flush, round trip) is shared; with one request at a time a batch is one
item and nothing waits. No thread of its own, no timer: an idle server does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
_WAITING = object()


class GroupCommit(Generic[Item, Result]):
    """Batches ``submit`` calls of concurrent threads into calls of ``flush`` (one at a time)."""

    def __init__(self, flush: Callable[[Sequence[Item]], Sequence[Result]], max_batch: int = 256) -> None:
        """``flush(items)`` returns one result per item, in order; if it raises, every item of that batch
        gets the exception from ``submit``. At most ``max_batch`` items go in one call."""
        self._flush = flush
        self._max = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[list] = []  # [item, result or _WAITING] per waiting submit
        self._busy = False
        self.batches = 0  # flush calls so far (what tests and the benchmark read)
        self.items = 0

    def submit(self, item: Item) -> Result:
        """``flush``'s result for ``item``, computed in a batch with whatever else is waiting."""
        slot = [item, _WAITING]
        with self._cond:
            self._pending.append(slot)
            while slot[1] is _WAITING:
                if self._busy:
                    self._cond.wait()
                    continue
                batch, self._pending = self._pending[:self._max], self._pending[self._max:]
                self._busy = True
                self._cond.release()
                try:
                    results = self._run([s[0] for s in batch])
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()  # the finished batch's threads, and the next leader
                for s, r in zip(batch, results, strict=True):
                    s[1] = r
                self.batches += 1
                self.items += len(batch)
        if isinstance(slot[1], _Failed):
            raise slot[1].exc
        return slot[1]

    def _run(self, items: list) -> list:
        try:
            results = list(self._flush(items))
            if len(results) != len(items):
                raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
            return results
        except BaseException as exc:  # every waiter of this batch must hear of it, not only the leader
            return [_Failed(exc)] * len(items)


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
