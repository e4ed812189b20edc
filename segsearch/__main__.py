"""``python -m segsearch``: the same as the ``segsearch`` command."""

from __future__ import annotations

from segsearch.cli import main

if __name__ == "__main__":
    from segsearch import heap

    heap.own_process()  # this process is segsearch's, start to end: cheaper collections
    raise SystemExit(main())
