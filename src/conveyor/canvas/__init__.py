"""Workflows: signatures, chain, group and chord (Celery's canvas).

A :class:`Signature` is one task call packed as data: the task's name, its arguments
and its sending options. It goes to JSON and back (``to_dict``/``from_dict``), so a
workflow can be stored, sent, and applied by a worker. Signatures combine three ways:

    chain(a, b, c)       a runs; the worker that finishes it sends b with a's result
                         prepended to b's arguments (unless b is immutable: ``.si()``)
    group(a, b, c)       every member is sent at once (in bulk), tagged with the group id
    chord(header, body)  a group, then the body with the list of the header's results

Nothing polls. A chain travels as the callbacks of each message (``Envelope.callbacks``,
kept flat: step 1's message carries ``chain(step 2, ..., step n)``). A chord is joined
by the result backend: each header task's result is stored and counted in one atomic
step, and the step that counts the last one also queues the body (``chord_part`` in
``stores/``; the design is in docs/architecture.md, "Workflows").

Every id in a workflow is chosen ("frozen") before its first message leaves, so the
caller holds the final result at once, and a failure can be written onto every step
that will now never run.

The modules: ``signature`` (one call as data, and the option helpers), ``workflows``
(chain, group, chord, chunks), ``messages`` (what a chord's join sends), ``eager``
(running workflows in the caller's process).
"""

from __future__ import annotations

from .eager import apply_eager_links
from .messages import failure_text
from .signature import (
    ACCUMULATE,
    BUILTIN_TASKS,
    CHORD_JOIN,
    MAP,
    STARMAP,
    Signature,
    maybe_signature,
    signature,
    signature_dicts,
)
from .workflows import chain, chord, chunks, group

__all__ = [
    "ACCUMULATE",
    "BUILTIN_TASKS",
    "CHORD_JOIN",
    "MAP",
    "STARMAP",
    "Signature",
    "apply_eager_links",
    "chain",
    "chord",
    "chunks",
    "failure_text",
    "group",
    "maybe_signature",
    "signature",
    "signature_dicts",
]
