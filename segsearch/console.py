"""What segsearch writes to the console: progress lines, and no TensorFlow start-up noise.

:class:`TextProgress` shows a search's progress events for a person (the ``segsearch run`` command
and ``segsearch.run(...)`` from Python use it); :func:`import_tensorflow_quietly` imports TensorFlow
with its C++ start-up lines (CUDA, absl) kept off stderr. This module imports nothing heavy.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from segsearch.errors import yaml_text

__all__ = ["TextProgress", "import_tensorflow_quietly", "format_duration", "format_number",
           "format_timings",
           "format_params", "plural", "listed"]


def format_duration(seconds: float | None) -> str:
    """Format seconds as 42s, 3m10s or 1h02m."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_number(value: Any) -> str:
    """Format a metric or hyperparameter value compactly."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"
    return str(value)


def plural(count: Any, word: str) -> str:
    """The count and the word, plural unless the count is 1: "1 trial", "2 trials"."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def listed(parts: Sequence[str]) -> str:
    """Parts as a sentence lists them: "a", "a and b", "a, b and c"."""
    return parts[-1] if len(parts) < 2 else ", ".join(parts[:-1]) + " and " + parts[-1]


def format_params(params: Mapping[str, Any] | None) -> str:
    """key=value pairs; with an "architecture" choice, its "arch/" prefix is left off the names."""
    if not params:
        return ""
    prefix = f"{params['architecture']}/" if "architecture" in params else None
    return " ".join(
        f"{k[len(prefix):] if prefix and k.startswith(prefix) else k}={format_number(v)}"
        for k, v in params.items()
    )


class TextProgress:
    """Readable progress for a person: trial i of N, epoch, validation metric, best, time left.

    Args:
        objective: the metric to show (e.g. "val_dice").
        stream: where to write (stdout).
        live: rewrite the epoch line in place (default: when ``stream`` is a terminal).
    """

    def __init__(self, objective: str = "val_dice", stream: TextIO | None = None,
                 live: bool | None = None, direction: str = "maximize") -> None:
        self.objective = objective
        self.direction = direction
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._pending = False  # a live line is on screen without its newline
        self._trial_value: float | None = None  # the trial the final training continues

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Show one progress event (study_start, worker_start, trial_start, epoch, trial_end,
        final_start, final_epoch, export, study_end); other events are ignored."""
        handler = getattr(self, f"_on_{event.get('event')}", None)
        if handler is not None:
            handler(event)

    def _write(self, text: str, *, transient: bool = False) -> None:
        if self.live and self._pending:
            self.stream.write("\r\033[K")
        if transient and self.live:
            self.stream.write(text)
            self._pending = True
        else:
            self.stream.write(text + "\n")
            self._pending = False
        self.stream.flush()

    def _value(self, e: Mapping[str, Any]) -> str:
        metrics = e.get("metrics") or {}
        if self.objective in metrics:
            smoothed = metrics.get(f"{self.objective}_ema")
            avg = f" (avg {format_number(smoothed)})" if smoothed is not None else ""
            return f"{self.objective} {format_number(metrics[self.objective])}{avg}"
        shown = [(k, v) for k, v in metrics.items() if k.startswith("val_")][:2]
        return "  ".join(f"{k} {format_number(v)}" for k, v in shown)

    def _trial(self, e: Mapping[str, Any]) -> str:
        index = e.get("index")
        count = f"{index}/{e.get('trials_total', '?')}" if index is not None else "?"
        number = f" (#{e['trial']})" if e.get("trial") is not None else ""
        return f"trial {count}{number}"

    def _tail(self, e: Mapping[str, Any]) -> list[str]:
        parts = []
        if e.get("best_value") is not None:
            parts.append(f"best {format_number(e['best_value'])}")
        if e.get("elapsed_s") is not None:
            parts.append(f"elapsed {format_duration(e['elapsed_s'])}")
        if e.get("eta_s") is not None:
            parts.append(f"left ~{format_duration(e['eta_s'])}")
        return parts

    def _on_storage_rebuilt(self, e: Mapping[str, Any]) -> None:
        self._write(f"Rebuilt the study's records ({plural(e.get('trials', 0), 'trial')}) from "
                    f"{e.get('path', 'the study')}/trials into {e.get('storage', 'its storage')}")

    def _on_study_start(self, e: Mapping[str, Any]) -> None:
        if e.get("moved_aside"):
            self._write(f"Moved the old study aside to {e['moved_aside']}")
        if e.get("data"):
            self._write(f"Data: {e['data']}")
        for choice in e.get("auto") or ():
            self._write(f"Auto: {choice['key']} = {yaml_text(choice['value'])} "
                        f"({choice['reason']})")
        if e.get("seed_infeasible"):
            self._write(f"Note: the seed network cannot be built at this size: "
                        f"{e['seed_infeasible']}. The search goes on with the configurations of "
                        "the space that fit")
        done = e.get("trials_done") or 0
        if e.get("resumed"):
            self._write(f"Resuming {e.get('path', 'the study')}: {done} of "
                        f"{e.get('trials_total', '?')} trials done")
        if e.get("baseline"):
            from segsearch.scores import baseline_text

            text = baseline_text({"best": e["baseline"]}, self.objective)
            if text:
                self._write(f"Baseline (a constant prediction, to beat clearly): {text}")

    def _on_trial_start(self, e: Mapping[str, Any]) -> None:
        params = dict(e.get("params") or {})
        self._write(f"{self._trial(e)}  {format_params(params)}".rstrip())

    def _epoch_parts(self, e: Mapping[str, Any]) -> list[str]:
        """"epoch 3/10" and the objective, the start of a trial's and the final's epoch line."""
        parts = [f"  epoch {e.get('epoch', '?')}/{e.get('epochs', '?')}"]
        value = self._value(e)
        if value:
            parts.append(value)
        return parts

    def _baseline(self, e: Mapping[str, Any]) -> list[str]:
        """The best constant prediction's objective, beside the model's figures."""
        baseline = e.get("baseline")
        return [f"baseline {format_number(baseline)}"] if isinstance(baseline, (int, float)) \
            and not isinstance(baseline, bool) else []

    def _on_epoch(self, e: Mapping[str, Any]) -> None:
        self._write("  ".join(self._epoch_parts(e) + self._baseline(e) + self._tail(e)),
                    transient=True)

    def _on_trial_end(self, e: Mapping[str, Any]) -> None:
        state = str(e.get("state", "done"))
        parts = [f"  {state}"]
        value = e.get("value")
        if value is not None:
            baseline = e.get("baseline")
            vs = f" (baseline {format_number(baseline)})" if baseline is not None else ""
            if isinstance(baseline, (int, float)) and isinstance(value, (int, float)) and (
                    value < baseline if self.direction == "maximize" else value > baseline):
                vs = f" (below the baseline {format_number(baseline)})"
            parts.append(f"{self.objective} {format_number(value)}{vs}")
        if e.get("epochs") is not None:
            seconds = e.get("duration_s")
            took = f", {format_duration(seconds)}" if seconds is not None else ""
            parts.append(f"({plural(e['epochs'], 'epoch')}{took})")
        if e.get("reason") and state != "complete":
            parts.append(f"- {str(e['reason']).splitlines()[0]}")
        self._write("  ".join(parts + self._tail(e)))

    def _on_worker_start(self, e: Mapping[str, Any]) -> None:
        if e.get("cuda_visible_devices") is None and not e.get("memory_growth"):
            return  # the usual case: nothing to say
        gpu = e.get("cuda_visible_devices")
        where = f"on GPU {gpu}" if gpu is not None else "on every GPU"
        growth = (f", memory growth on for {', '.join(e['memory_growth'])}"
                  if e.get("memory_growth") else ", TensorFlow sees no GPU")
        if e.get("backend") not in (None, "tensorflow"):
            growth = f", {e['backend']} sees {', '.join(e.get('devices') or []) or 'no GPU'}"
        sharing = int(e.get("sharing") or 1)
        if sharing > 1:
            cap = e.get("memory_limit_mib")
            cap = f"{cap} MiB" if cap else (e.get("xla_mem_fraction") or "its share")
            growth += f", sharing it with {plural(sharing - 1, 'other worker')} (memory cap {cap})"
        self._write(f"  worker process {e.get('pid')} {where}{growth}")

    def _on_oom_retry(self, e: Mapping[str, Any]) -> None:
        self._write(f"  {self._trial(e)} ran out of memory at batch size {e.get('batch_size')}: "
                    f"trying it once more at {e.get('retry_batch_size')}")

    def _on_final_start(self, e: Mapping[str, Any]) -> None:
        trial = f" (trial #{e['trial']})" if e.get("trial") is not None else ""
        epochs = f" for {plural(e['epochs'], 'more epoch')}" if e.get("epochs") else ""
        self._trial_value = e.get("value")
        self._write(f"Training the best configuration{trial}{epochs}")

    def _on_final_epoch(self, e: Mapping[str, Any]) -> None:
        parts = self._epoch_parts(e)
        # the final training's own best (moving average), beside the trial's it has to beat
        if e.get("own_best") is not None:
            parts.append(f"final best {format_number(e['own_best'])}")
        if self._trial_value is not None:
            parts.append(f"trial {format_number(self._trial_value)}")
        parts += self._baseline(e)
        tail = [p for p in self._tail(e) if not p.startswith("best ")]
        self._write("  ".join(parts + tail), transient=True)

    def _on_final_end(self, e: Mapping[str, Any]) -> None:
        if e.get("state") == "complete":
            if e.get("trial_kept"):  # no epoch beat the trial's best average
                self._write(f"  the final training's best average "
                            f"({format_number(e.get('final_best'))}) did not beat trial "
                            f"#{e.get('trial', '?')}'s {format_number(e.get('trial_value'))}: "
                            f"its checkpoint ({e.get('model')}) stays the best model")
            return  # otherwise the epochs said it all
        reason = str(e.get("reason") or "unknown reason").splitlines()[0]
        self._write(f"  final training {e.get('state', 'failed')} - {reason}")

    def _on_refit_start(self, e: Mapping[str, Any]) -> None:
        trials = ", ".join(f"#{t}" for t in e.get("trials") or ())
        self._write(f"Cross-validation: trials {trials} on every one of {e.get('folds', '?')} "
                    f"folds ({plural(e.get('trainings', 0), 'training')} to go)")

    @staticmethod
    def _fold_label(e: Mapping[str, Any]) -> str:
        further = " (trained further)" if e.get("further") else ""
        return f"  trial #{e.get('trial', '?')} fold {e.get('fold', '?')}{further}"

    def _on_refit_fold_start(self, e: Mapping[str, Any]) -> None:
        self._refit = self._fold_label(e)

    def _on_final_folds_start(self, e: Mapping[str, Any]) -> None:
        folds = ", ".join(str(f) for f in e.get("folds") or ())
        self._write(f"Training the best configuration's fold models (folds {folds}) for "
                    f"{plural(e.get('epochs', 0), 'more epoch')} each, for the ensemble")

    def _on_refit_epoch(self, e: Mapping[str, Any]) -> None:
        parts = [getattr(self, "_refit", "  refit")] + self._epoch_parts(e)
        tail = [p for p in self._tail(e) if not p.startswith("best ")]
        self._write("  ".join(parts + tail), transient=True)

    def _on_refit_fold_end(self, e: Mapping[str, Any]) -> None:
        parts = [f"{self._fold_label(e)}: {e.get('state', 'done')}"]
        if e.get("value") is not None:
            parts.append(f"{self.objective} {format_number(e['value'])}")
        if e.get("reason") and e.get("state") != "complete":
            parts.append(f"- {str(e['reason']).splitlines()[0]}")
        self._write("  ".join(parts))

    def _on_refit_end(self, e: Mapping[str, Any]) -> None:
        for line in e.get("lines") or ():  # the folds' table (segsearch.folds.summary_lines)
            self._write(str(line))

    def _on_export(self, e: Mapping[str, Any]) -> None:
        from segsearch.formats import summary_lines, warning_lines

        if e.get("unchanged"):  # a rerun of a finished study: nothing was written
            self._write(f"The best model in {e.get('path', '?')} is up to date (nothing "
                        "changed since it was exported)")
            return
        self._write(f"Exported the best model to {e.get('path', '?')}")
        for line in summary_lines(e.get("formats")) + [
                f"  {w}" for w in warning_lines(e.get("formats"))] + list(e.get("notes") or ()):
            self._write(line)

    def _on_study_end(self, e: Mapping[str, Any]) -> None:
        if self._pending:
            self._write("")


#: how ``status --verbose`` names a trial's phases (segsearch.engines.trial.PHASES), in order.
_PHASE_WORDS = (("worker_start", "worker start"), ("setup", "setup"), ("build", "build"),
                ("data", "data"), ("first_step", "first step"), ("first_epoch", "first epoch"),
                ("first_validation", "of it validation"), ("epoch", "later epochs"),
                ("validation", "of it validation"), ("checkpoint", "checkpoint"),
                ("total", "total"))


def format_timings(timings: Mapping[str, Any] | None) -> str:
    """One line of where a trial's seconds went, e.g. "build 0.4 s, first step 2.1 s, first epoch
    3.0 s (of it validation 0.6 s), later epochs 0.5 s each, checkpoint 0.1 s, total 5.2 s"
    ("" without timings).

    Args:
        timings: the trial record's ``timings``.
    """
    if not timings:
        return ""
    parts: list[str] = []
    for key, word in _PHASE_WORDS:
        value = timings.get(key)
        if not isinstance(value, (int, float)) or (key == "worker_start" and not value):
            continue
        text = f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
        if key == "epoch":
            text += " each"
        if word.startswith("of it") and parts:
            parts[-1] += f" ({word} {text})"
        else:
            parts.append(f"{word} {text}")
    return ", ".join(parts)


class _NoRetracingNotice(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function ...> triggered tf.function
    retracing" warning: every new network of a search is traced anew, by design, and the notice
    (a paragraph on the console) tells the user nothing they can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _NoRetracingNotice()


def _hide_retracing_notices() -> None:
    """Install :class:`_NoRetracingNotice` on TensorFlow's logger (once)."""
    logger = logging.getLogger("tensorflow")
    if _RETRACING_FILTER not in logger.filters:
        logger.addFilter(_RETRACING_FILTER)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr silenced: its C++ start-up lines ("Could not find cuda
    drivers", absl's "WARNING: All log messages before absl::InitializeLog()") ignore
    TF_CPP_MIN_LOG_LEVEL. Its later info and warning lines are turned off too
    (TF_CPP_MIN_LOG_LEVEL=3, unless set). A failed import is left for the real import to report."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    _hide_retracing_notices()
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    except Exception:  # noqa: BLE001 - reported by the import that needs it
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
