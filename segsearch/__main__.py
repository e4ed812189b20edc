"""``python -m segsearch``: the same as the ``segsearch`` command."""

from __future__ import annotations

from segsearch.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
