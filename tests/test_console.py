"""segsearch/console.py: what the console shows of TensorFlow."""

from __future__ import annotations

import logging

import pytest


def test_tensorflow_retracing_notices_are_dropped_and_other_warnings_kept(caplog) -> None:
    pytest.importorskip("tensorflow")
    from segsearch.console import import_tensorflow_quietly

    import_tensorflow_quietly()
    import_tensorflow_quietly()  # installed once
    logger = logging.getLogger("tensorflow")
    assert sum(type(f).__name__ == "_NoRetracingNotice" for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning("5 out of the last 7 calls to <function f at 0x1> triggered tf.function "
                       "retracing. Tracing is expensive and ...")
        logger.warning("a warning the user needs")
    assert [r.getMessage() for r in caplog.records] == ["a warning the user needs"]
