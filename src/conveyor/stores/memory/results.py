"""The in-process result backend: a dict and a condition, for one process.

Backends made from the same URL share their results while any of them lives (like
``stores/memory/transport.py``). ``wait()`` blocks on the condition, which ``store()`` of a final
state notifies: pushed, never polled. Expired entries are ignored, and swept on store.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..results import ChordBody, ChordSpec, ResultBackend

if TYPE_CHECKING:
    from ..transport import ResultWrite

__all__ = ["MemoryBackend"]

_SWEEP_EVERY = 10.0


@dataclass
class _Results:
    cond: threading.Condition = field(default_factory=threading.Condition)
    # task id -> (payload, final, expires at, monotonic)
    entries: dict[str, tuple[bytes, bool, float]] = field(default_factory=dict)
    next_sweep: float = 0.0
    # chord id -> (its spec, the header task ids counted so far)
    chords: dict[str, tuple[ChordSpec, set[str]]] = field(default_factory=dict)


_stores: weakref.WeakValueDictionary[str, _Results] = weakref.WeakValueDictionary()
_stores_lock = threading.Lock()


def _results_for(url: str) -> _Results:
    with _stores_lock:
        results = _stores.get(url)
        if results is None:
            results = _stores[url] = _Results()
        return results


class MemoryBackend(ResultBackend):
    def __init__(self, url: str = "memory://", *, expires: float = 86400.0) -> None:
        self.url = url
        self.location = url.removeprefix("cache+")  # Celery's name for the same store
        self.expires = expires
        self.ttl = max(float(expires), 0.001)
        self._results = _results_for(url)

    def store(self, task_id: str, payload: bytes, final: bool) -> None:
        results = self._results
        now = time.monotonic()
        with results.cond:
            entries = results.entries
            current = entries.get(task_id)
            # An interim state never replaces a live final one.
            if final or current is None or not current[1] or current[2] <= now:
                entries[task_id] = (payload, final, now + self.ttl)
            if now >= results.next_sweep:
                results.next_sweep = now + _SWEEP_EVERY
                for key in [k for k, entry in entries.items() if entry[2] <= now]:
                    del entries[key]
            if final:
                results.cond.notify_all()

    def _live(self, task_id: str) -> tuple[bytes, bool, float] | None:
        entry = self._results.entries.get(task_id)
        if entry is not None and entry[2] <= time.monotonic():
            del self._results.entries[task_id]
            return None
        return entry

    def get(self, task_id: str) -> bytes | None:
        with self._results.cond:
            entry = self._live(task_id)
            return entry[0] if entry is not None else None

    def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._results.cond:
            while True:
                entry = self._live(task_id)
                if entry is not None and entry[1]:
                    return entry[0]
                if deadline is None:
                    self._results.cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._results.cond.wait(remaining)

    # chords: one lock makes the store and the count one step; the caller always sends
    # the body (there is no broker store to queue it in) --------------------------------
    def chord_start(self, spec: ChordSpec) -> None:
        with self._results.cond:
            chords = self._results.chords
            counted = chords[spec.id][1] if spec.id in chords else set()
            chords[spec.id] = (spec, counted)

    def chord_part(self, chord_id: str, write: ResultWrite) -> ChordBody | None:
        with self._results.cond:
            self.store(write.task_id, write.payload, write.final)
            chord = self._results.chords.get(chord_id)
            if chord is None or write.task_id in chord[1]:
                return None
            spec, counted = chord
            counted.add(write.task_id)
            return spec.body if len(counted) == len(spec.members) else None

    def chord_members(self, chord_id: str) -> list[str] | None:
        with self._results.cond:
            chord = self._results.chords.get(chord_id)
            return list(chord[0].members) if chord is not None else None

    def forget(self, task_id: str) -> None:
        with self._results.cond:
            self._results.entries.pop(task_id, None)

    def close(self) -> None:
        """Nothing to close; results live while any backend on this URL does."""
