"""TensorBoard logs of the trials (``export.tensorboard: true``): scalars and HParams, one run each.

Each trial writes one run, ``<study>/tensorboard/trial_<nnnn>/``, and the final training
``<study>/tensorboard/final/``; open them with ``tensorboard --logdir <study>/tensorboard``.

- Scalars: after each epoch, the trial's metrics as in its ``history.csv``, under the same name
  (``loss``, ``dice``, ``val_loss``, ``val_dice``, ``val_dice_ema``, ``time_s``, ...), at the step
  of the epoch counted from the network's first epoch (a continuation goes on where it stopped).
- HParams: when training starts, the trial's hyperparameters (the session ``trial_<nnnn>``);
  when it ends, the scalar ``hparams/<objective>``: the trial's value (the moving average of the
  objective at its best epoch, the value the engine was told), the metric the HParams dashboard
  compares (a failed trial writes none).

The events are written with the ``tensorboard`` package's own writer (pure Python, protocol
buffers): no TensorFlow is needed, so the JAX backend writes the same files. A run that trains
again (a retry in the same folder, a final training run again) starts its folder anew.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

__all__ = ["ROOT", "METRIC_PREFIX", "run_name", "hparam_values", "TensorBoardLog"]

#: the folder of the runs, in the study folder.
ROOT = "tensorboard"
#: the tag of the trial's value, for the HParams dashboard: ``hparams/<objective>``.
METRIC_PREFIX = "hparams/"


def run_name(number: int) -> str:
    """The run's folder name: ``trial_<nnnn>``, or ``final`` for the final training (-1).

    Args:
        number: the trial number.
    """
    return "final" if number < 0 else f"trial_{int(number):04d}"


def hparam_values(params: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """The hyperparameters as HParams takes them: numbers, booleans and strings (others as text).

    Args:
        params: the trial's hyperparameter values.
    """
    out: dict[str, bool | int | float | str] = {}
    for name, value in params.items():
        if isinstance(value, (bool, int, float, str)):
            out[str(name)] = value
        else:
            out[str(name)] = str(value)
    return out


class TensorBoardLog(keras.callbacks.Callback):
    """Writes a trial's scalars and HParams into its run folder (see the module docstring).

    Args:
        run_dir: the run's folder (emptied when training starts).
        hparams: the trial's hyperparameters.
        objective: the objective's name (the metric ``hparams/<objective>``).
        monitor: the trial's epoch monitor, read after it: its ``history`` (one row per epoch,
            history.csv's) and ``own_best`` (the best moving average of this run's epochs: the
            trial's value).
    """

    def __init__(self, run_dir: Path, hparams: Mapping[str, Any], objective: str,
                 monitor: Any) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.hparams = hparam_values(hparams)
        self.objective = objective
        self.monitor = monitor
        self._writer: Any = None
        self._step = 0
        self._written = 0  # rows of the monitor's history already written

    def _write(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._write(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                                   for tag, value in values.items()]), step)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)  # a run trained again starts anew
        self.run_dir.mkdir(parents=True)
        self._writer = EventFileWriter(str(self.run_dir))
        self._written = len(self.monitor.history)
        self._step = 0
        pb = summary_v2.hparams_pb(self.hparams, trial_id=self.run_dir.name,
                                   start_time_secs=int(time.time()))
        self._write(pb, self._step)
        self._writer.flush()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._writer is None:
            return
        for row in self.monitor.history[self._written:]:
            step = int(row.get("epoch", epoch + 1))
            self._scalars({tag: value for tag, value in row.items()
                           if tag != "epoch" and isinstance(value, (int, float))}, step)
            self._step = step
        self._written = len(self.monitor.history)
        self._writer.flush()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        value = getattr(self.monitor, "own_best", None)  # this run's, not a baseline it had
        if self._writer is not None and getattr(self.monitor, "stop_state", None) != "failed" \
                and isinstance(value, (int, float)):
            self._scalars({METRIC_PREFIX + self.objective: value}, self._step)
        self.close()

    def close(self) -> None:
        """Flush and close the event file (again: nothing)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
