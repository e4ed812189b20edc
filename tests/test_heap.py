"""segsearch.heap: the collection between trials, frozen once in a process segsearch owns."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# in a fresh interpreter: freezing the test process's heap would change what later tests collect
SCRIPT = textwrap.dedent("""
    import gc
    import weakref

    from segsearch import heap


    class Node:
        pass


    def cycle():
        node = Node()
        node.me = node
        return node


    gc.unfreeze()
    heap.collect()
    assert gc.get_freeze_count() == 0, "froze a process segsearch does not own"
    heap.own_process()
    kept = cycle()
    heap.collect()
    frozen = gc.get_freeze_count()
    assert frozen > 0, "nothing frozen in a process segsearch owns"
    garbage = cycle()
    gone = weakref.ref(garbage)
    del garbage
    heap.collect()
    assert gone() is None, "garbage made after the freeze was not collected"
    assert gc.get_freeze_count() == frozen, "froze again"
    print("ok")
""")


def test_an_owned_process_freezes_once_and_still_collects_what_is_made_later():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
