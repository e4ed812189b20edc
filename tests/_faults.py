"""Test-only fault injection: chosen trials fail on purpose, in whichever process trains them.

``SEGSEARCH_FAULT="TRIAL:KIND[@EPOCH],..."`` makes trial ``TRIAL`` (-1: the final training;
``TRIAL/FOLD``: its cross-validation refit on that fold) fail
at the first batch of epoch ``EPOCH`` (default 1), with ``KIND`` one of: kill (SIGKILL itself),
segv (SIGSEGV), exit (``os._exit(3)``), oom (an out-of-memory error at the study's own batch size
only, so the half-batch retry succeeds), raise (a RuntimeError), missing (a ModuleNotFoundError
for scipy: an error from outside the configuration), sleep (sleeps 30 s, to be killed),
interrupt (a KeyboardInterrupt: Ctrl-C in the process that trains).

``SEGSEARCH_TEST_EAGER=1`` (set by a test whose subject is not graph-mode training) makes every
trial train eagerly (``model.run_eagerly``): a tiny network's few steps cost far less than tracing
its training and test functions (the ``eager_trials`` fixture of tests/conftest.py sets it). The
trials of tests/test_driver.py, test_devices.py and test_robust.py's worker, kill and signal tests
keep graph mode, as a user's run.

It reaches the training through segsearch's general hook, ``SEGSEARCH_TRIAL_CALLBACKS``
(:data:`segsearch.engines.trial.CALLBACKS_ENV`), which ``tests/conftest.py`` points at
:func:`callbacks` for the whole test session, so worker processes and ``python -m segsearch``
subprocesses started by the tests inherit it; segsearch itself knows no fault names.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import keras

#: the environment variable the tests set to choose the faults.
FAULT_ENV = "SEGSEARCH_FAULT"
#: the environment variable a test sets to "1" to train its trials eagerly.
EAGER_ENV = "SEGSEARCH_TEST_EAGER"


def callbacks(task: Any) -> list[keras.callbacks.Callback]:
    """The fault callback for this trial, if ``SEGSEARCH_FAULT`` chooses one, and the eager
    switch, if ``SEGSEARCH_TEST_EAGER`` is set (the hook's function).

    Args:
        task: the ``segsearch.engines.trial.TrialTask`` about to train.
    """
    fault = fault_for(task)
    chosen: list[keras.callbacks.Callback] = [] if fault is None else [Fault(fault)]
    if os.environ.get(EAGER_ENV) == "1":
        chosen.append(Eager())
    return chosen


class Eager(keras.callbacks.Callback):
    """Trains the model eagerly: ``fit`` hands its callbacks the model before it makes (and
    traces) its training function."""

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        model.run_eagerly = True


def fault_for(task: Any) -> tuple[str, int] | None:
    """(kind, epoch) of the fault ``SEGSEARCH_FAULT`` chooses for this trial, or None."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    for part in spec.split(","):
        try:
            trial, rest = part.strip().split(":", 1)
            kind, _, epoch = rest.partition("@")
            trial, _, fold = trial.partition("/")
            if getattr(task, "fold", None) != (int(fold) if fold else None):
                continue
            if int(trial) == task.number:
                if kind == "oom" and task.batch_size is not None:
                    return None
                return kind, int(epoch or 1)
        except ValueError:
            continue
    return None


class ResourceExhaustedError(RuntimeError):
    """Stands in for TensorFlow's out-of-memory error (segsearch tells it by its name)."""


class Fault(keras.callbacks.Callback):
    """Fails the training at the first batch of the chosen epoch."""

    def __init__(self, fault: tuple[str, int]) -> None:
        super().__init__()
        self.kind, self.epoch = fault
        self.current = 0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.current = epoch + 1

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if batch != 0 or self.current != self.epoch:
            return
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.kind == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif self.kind == "exit":
            os._exit(3)
        elif self.kind == "oom":
            raise ResourceExhaustedError("OOM when allocating tensor with shape[8,64,32,32] "
                                         "(injected by SEGSEARCH_FAULT)")
        elif self.kind == "raise":
            raise RuntimeError("injected by SEGSEARCH_FAULT")
        elif self.kind == "missing":
            raise ModuleNotFoundError("No module named 'scipy'", name="scipy")
        elif self.kind == "sleep":
            time.sleep(30)
        elif self.kind == "interrupt":
            raise KeyboardInterrupt
