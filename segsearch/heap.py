"""Python's garbage collection between trials, cheaper in a process segsearch owns.

A full collection walks every object Python tracks: about 400,000 once TensorFlow, Keras and
Optuna are imported (0.4 s of CPU a collection here), although nearly all of them live as long
as the process (modules, functions, classes). In a process segsearch starts and runs from start
to end (``python -m segsearch``, a trial worker process), :func:`collect` freezes what survives
its first collection (``gc.freeze``): later collections walk only the objects made since, which
hold everything a trial makes (its model, graphs, optimizer, datasets), so a finished trial's
memory is released as before, for a fraction of the cost.

Elsewhere (segsearch called from a user's script, a notebook, a test) nothing is frozen: a
frozen object that later becomes part of a garbage cycle is never collected, and what a caller
made before the search is the caller's.

    >>> from segsearch import heap
    >>> heap.collect()          # a plain gc.collect() until own_process() is called
"""

from __future__ import annotations

import gc

__all__ = ["collect", "own_process"]

_owned = False


def own_process() -> None:
    """Declare this process segsearch's own, start to end (``python -m segsearch``, a trial
    worker): :func:`collect` may then freeze the objects that survive its first collection."""
    global _owned
    _owned = True


def collect() -> None:
    """Collect the garbage (every generation); in a process segsearch owns, the first call also
    freezes the survivors, so that later calls walk only the objects made after it."""
    global _owned
    gc.collect()
    if _owned:
        gc.freeze()
        _owned = False  # once: what is made after it (the trials' objects) stays collectable
