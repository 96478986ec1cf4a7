"""Group commit for the threads of one server process: many concurrent judgments, one statement and one
commit.

``GroupCommit(flush).submit(item)`` is called by each request thread. A thread that finds no batch in
flight leads: it takes every item waiting (its own first) and runs ``flush(items)`` on its own database
connection. Threads that arrive while a batch is in flight queue up (blocked on a lock of their own,
without the interpreter lock) and go in the next batch, so under load the batches grow by themselves
and the commit's fixed cost (statement start, WAL flush, round trip) is shared; with one request at a
time a batch is one item and nothing waits. No thread of its own, no timer: an idle server does nothing.

When a batch is done its leader wakes exactly the threads of that batch, and hands the lead to the
oldest queued thread, if any; nobody else is woken (a shared condition variable would wake every
waiting thread at every batch, only for most of them to wait again).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
_WAITING = object()


class _Slot:
    __slots__ = ("item", "result", "wake")

    def __init__(self, item) -> None:
        self.item, self.result = item, _WAITING
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: when the result is in, or when this thread is to lead


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class GroupCommit(Generic[Item, Result]):
    """Batches ``submit`` calls of concurrent threads into calls of ``flush`` (one at a time)."""

    def __init__(self, flush: Callable[[Sequence[Item]], Sequence[Result]], max_batch: int = 256,
                 linger: float = 0.0) -> None:
        """``flush(items)`` returns one result per item, in order; if it raises, every item of that batch
        gets the exception from ``submit``. At most ``max_batch`` items go in one call. ``linger`` (s): a
        leader that finds others queued behind it waits this long for more before it flushes (fewer,
        larger commits for a little latency; 0 = flush at once)."""
        self._flush = flush
        self._max = max_batch
        self._linger = linger
        self._mutex = threading.Lock()
        self._queue: deque[_Slot] = deque()
        self._busy = False
        self.batches = 0  # flush calls so far (what tests read)
        self.items = 0

    def submit(self, item: Item) -> Result:
        """``flush``'s result for ``item``, computed in a batch with whatever else is waiting."""
        slot = _Slot(item)
        with self._mutex:
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                self._queue.append(slot)
        if not lead:
            slot.wake.acquire()
        if slot.result is _WAITING:  # woken (or arrived) to lead a batch
            self._lead(slot)
        if isinstance(slot.result, _Failed):
            raise slot.result.exc
        return slot.result

    def _lead(self, own: _Slot) -> None:
        if self._linger and self._queue:
            time.sleep(self._linger)
        with self._mutex:
            batch = [own]
            while self._queue and len(batch) < self._max:
                batch.append(self._queue.popleft())
        for s, r in zip(batch, self._call([s.item for s in batch]), strict=True):
            s.result = r
        with self._mutex:
            self.batches += 1
            self.items += len(batch)
            nxt = self._queue.popleft() if self._queue else None
            self._busy = nxt is not None
        for s in batch[1:]:
            s.wake.release()
        if nxt is not None:
            nxt.wake.release()  # its result is still _WAITING: it leads the next batch

    def _call(self, items: list) -> list:
        try:
            results = list(self._flush(items))
            if len(results) != len(items):
                raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
            return results
        except BaseException as exc:  # every waiter of this batch must hear of it, not only the leader
            return [_Failed(exc)] * len(items)
