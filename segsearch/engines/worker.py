"""Trials trained apart from the driver: a recycled worker process (``train.isolation: process``).

:class:`TrialWorker` starts one child process (``multiprocessing`` "spawn": a fresh interpreter,
nothing inherited from the driver's TensorFlow state) that builds the study's hypermodel and
training context once, with the ``prepare`` function the driver hands it
(:func:`segsearch.workshop.prepare_trials`: this module imports nothing above the engines), and
then trains one trial after another through :func:`segsearch.engines.trial.run_trial`.
The driver and the worker talk over a pipe:

- driver -> worker: ``("trial", task, params, prune, deadline, hp_config)``; ``("prune", bool)``
  answers a report; ``("call", function, args, kwargs)`` runs a module-level function there
  (the trivial baseline and the export: they run models, which would initialise the GPU in the
  driver; answered ``("result", value)``); ``("stop",)``. The worker builds the trial's model
  from ``params`` through an Optuna ``FixedTrial`` (the Optuna engine), or from ``hp_config``,
  a keras-tuner ``HyperParameters.get_config()`` (the Keras Tuner engine), exactly as the engine
  would.
- worker -> driver: ``("ready", pid, devices)`` (its ``CUDA_VISIBLE_DEVICES``, the memory
  variables it runs with, the backend and the GPUs it sees, its memory cap, the compilation
  cache, the backends imported before its environment was set (none), sent on as a
  ``worker_start`` progress event); ``("event", dict)`` (the
  progress events, forwarded as they happen); ``("report", epoch, value)`` (the driver asks the
  engine whether to prune and answers); ``("outcome", TrialOutcome)``; ``("error", exception)``
  for a configuration error that no trial would escape.

A worker that dies (a segfault, the kernel's OOM killer, ``os._exit``, a GPU fault) ends its trial
as "failed" with the exit code or signal as the reason; the next trial starts a new worker. A
worker is also replaced (between trials) after ``train.worker_max_trials`` trials, or once its
resident memory grew by ``train.worker_max_growth_mb`` MiB since its first trial ended (what
that trial loaded, GPU libraries and compiled kernels, is start-up): TensorFlow keeps a little of
every network a process built (20-30 MiB a trial for a small U-Net), which
``clear_session`` does not give back. After each trial the driver sends a ``worker_memory``
progress event (the worker's RSS, its growth, its trial count) and, when it recycles the worker, a
``worker_recycle`` event with the reason. The
worker dies with the driver (``PR_SET_PDEATHSIG`` on Linux, and it stops at its next message when
the pipe is closed), ignores Ctrl-C (the driver handles it and stops the worker), ends the trial it
trains and exits on SIGTERM (the driver sends it when it stops; a batch scheduler may send it to
every process of the job), and, before it imports a backend, takes the environment of its slot
(:func:`segsearch.devices.worker_environment`: ``CUDA_VISIBLE_DEVICES`` of its GPU, ``--gpus``;
JAX without preallocation, capped at its share where ``search.workers_per_gpu`` workers share the
GPU; TensorFlow's memory growth or memory cap), so that a trial holds the GPU memory it needs
rather than all of it. Under JAX it keeps compiled networks in ``<study>/cache/jax``
(:func:`compilation_cache`).

The driver process never builds a network for a trial, so its memory stays flat across trials
(``benchmarks/bench_memory.py``).

The worker imports TensorFlow with its start-up lines kept off the terminal
(:func:`segsearch.console.import_tensorflow_quietly`); this module imports nothing heavy, since
the new interpreter imports it before the worker's first line runs. A worker that cannot start
sends the error (type, message, fix) to the driver. A "spawn" worker imports the main module
again: a script that starts a search at import time, without ``if __name__ == "__main__":``,
would start the search again in the worker; :func:`in_spawn_bootstrap` tells the driver so, the
worker leaves at once, and the driver stops with one message naming the guard.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segsearch.engines.trial import TrialOutcome, TrialTask

__all__ = ["TrialWorker", "describe_exit", "process_rss_mib", "in_spawn_bootstrap",
           "leave_spawn_bootstrap", "EXIT_NO_MAIN_GUARD"]

#: seconds a new worker may take to import TensorFlow and load the data.
START_TIMEOUT = 600.0
#: the exit code of a worker that found the main module starting a search at import time.
EXIT_NO_MAIN_GUARD = 86
#: where a worker that cannot start writes its traceback, in the study folder.
WORKER_ERROR_FILE = "worker_error.txt"


def in_spawn_bootstrap() -> bool:
    """Whether this process is a "spawn" child still importing its parent's main module.

    There a search must not start: the parent's script runs ``segsearch.run(...)`` at import time
    (it lacks ``if __name__ == "__main__":``). multiprocessing marks that phase with the process
    attribute ``_inheriting`` (its own check, "An attempt has been made to start a new process
    before the current process has finished its bootstrapping phase", reads the same).
    """
    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


def leave_spawn_bootstrap() -> None:
    """Leave a spawn child that is importing a main module which starts a search (see
    :func:`in_spawn_bootstrap`), silently, with :data:`EXIT_NO_MAIN_GUARD`; the driver that
    started it reports the fix. Does nothing elsewhere."""
    if in_spawn_bootstrap():
        sys.stdout.flush()
        os._exit(EXIT_NO_MAIN_GUARD)


def no_main_guard_message() -> str:
    """The one message for a script that starts a search without the ``__main__`` guard."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    where = f" {script}" if script else " your script"
    return (
        "the trial worker process could not start: it imports the main module again, and"
        f"{where} starts the search as soon as it is imported. Put the code that calls "
        'segsearch.run(...) (or Study(...).run()) under `if __name__ == "__main__":` and run '
        "the script again (see README, From Python)"
    )


def _stop_no_main_guard() -> None:
    """In the driver: say what to do about a missing ``__main__`` guard and exit (status 2).

    An exception would end in a traceback (the script cannot run as it is, so nothing is lost).
    """
    sys.stdout.flush()
    sys.stderr.write(f"segsearch: error: {no_main_guard_message()}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def process_rss_mib(pid: int) -> float | None:
    """A process's resident memory in MiB (Linux /proc), or None where it cannot be read.

    Args:
        pid: the process id.
    """
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def describe_exit(code: int | None) -> str:
    """Words for a worker's exit code (negative: killed by a signal)."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " (the kernel's out-of-memory killer, or kill -9)",
            "SIGSEGV": " (a segmentation fault)",
            "SIGABRT": " (an abort, e.g. a failed check in TensorFlow or the GPU driver)",
            "SIGBUS": " (a bus error)",
        }.get(name, "")
        return f"killed by {name}{hint}, exit code {code}"
    return f"exit code {code}"


class TrialWorker:
    """One worker process that trains the trials it is given, restarted when it dies.

    Args:
        config: the study's Config (pickled to the worker).
        gpu: the value of ``CUDA_VISIBLE_DEVICES`` for the worker (None: inherit); the same as
            ``slot=Slot(gpu)``.
        slot: the worker's :class:`segsearch.devices.Slot` (its GPU and how many workers share
            it), which sets its environment before it imports a backend.
        on_event: where the worker's progress events go (the driver's emitter).
        prepare: ``prepare(config, progress) -> (hypermodel, context)``, run once in the worker
            (a module-level function: it is pickled to the worker by name).
    """

    def __init__(self, config: Any, *, gpu: str | None = None, slot: Any = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 prepare: Callable[[Any, Any], tuple[Any, Any]] | None = None) -> None:
        from segsearch.devices import Slot

        self.config = config
        self.prepare = prepare
        self.slot = slot if slot is not None else Slot(gpu)
        self.gpu = self.slot.gpu
        self.on_event = on_event
        self.process: Any = None
        self.conn: Any = None
        self.starts = 0
        self.trials = 0  # trials the current worker process trained
        self.ready_rss_mib: float | None = None  # its RSS when it was ready
        self.started_s: float | None = None  # seconds the latest start took (spawn to ready)
        self.pending_start_s: float | None = None  # ... not yet counted in a trial's timings
        train = getattr(config, "train", None)
        self.max_trials: int | None = getattr(train, "worker_max_trials", None)
        self.max_growth_mb: float | None = getattr(train, "worker_max_growth_mb", None)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker (if it is not running) and wait until it has loaded the study."""
        if self.process is not None and self.process.is_alive():
            return
        if self.prepare is None:
            raise TypeError("TrialWorker needs prepare=, the function that builds the hypermodel "
                            "and training context (segsearch.workshop.prepare_trials)")
        self.close()
        leave_spawn_bootstrap()  # a worker importing a script that starts a search at import time
        from segsearch.devices import worker_environment

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_worker_main,
                              args=(child, self.config,
                                    worker_environment(self.slot,
                                                       study_dir=self.config.study_dir),
                                    self.prepare, self.slot,
                                    {"main_thread": threading.current_thread()
                                     is threading.main_thread()}),
                              name="segsearch-trial-worker", daemon=True)
        try:
            process.start()
        except RuntimeError as e:  # multiprocessing's own check, should the one above miss
            if "bootstrapping phase" not in str(e):
                raise
            parent.close()
            child.close()
            leave_spawn_bootstrap()
            raise
        child.close()
        self.process, self.conn = process, parent
        self.starts += 1
        t0 = time.monotonic()
        while True:
            if parent.poll(0.5):
                try:
                    message = parent.recv()
                except (EOFError, OSError):
                    message = None
                if message is None:
                    break
                if message[0] == "ready":
                    self.trials = 0
                    self.ready_rss_mib = process_rss_mib(process.pid)
                    self.started_s = self.pending_start_s = round(time.monotonic() - t0, 3)
                    if self.on_event is not None:
                        self.on_event({"event": "worker_start", "pid": message[1],
                                       "starts": self.starts, "start_s": self.started_s,
                                       **message[2]})
                    return
                if message[0] == "error":
                    self.close()
                    raise message[1]
            if not process.is_alive() or time.monotonic() - t0 > START_TIMEOUT:
                break
        process.join(5)
        code = process.exitcode
        self.close()
        if code == EXIT_NO_MAIN_GUARD:
            _stop_no_main_guard()
        from segsearch.errors import StudyError

        raise StudyError(f"the trial worker process could not start ({describe_exit(code)}); "
                         "run with --set train.isolation=none to see the error in this process")

    def close(self, *, busy: bool = False) -> None:
        """Stop the worker: "stop" when it is idle, SIGTERM in a trial (it ends the trial cleanly,
        its temporary files removed), then a second SIGTERM and SIGKILL, 5 s apart.

        Args:
            busy: the worker is in a trial (it reads no "stop" until the trial ends): SIGTERM
                at once.
        """
        process, conn = self.process, self.conn
        self.process = self.conn = None
        if conn is not None:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        if process is not None:
            if not busy:
                process.join(2)
            for _ in range(2):  # the first SIGTERM unwinds its trial; a second ends it at once
                if process.is_alive():
                    process.terminate()
                    process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        if conn is not None:
            conn.close()

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when not running)."""
        return None if self.process is None else self.process.pid

    # ------------------------------------------------------------------ one trial
    def run(
        self,
        task: TrialTask,
        params: dict[str, Any] | None,
        reporter: Callable[[int, float], bool] | None = None,
        *,
        deadline: float | None = None,
        tick: Callable[[], None] | None = None,
        hp_config: dict[str, Any] | None = None,
    ) -> TrialOutcome:
        """Train one trial in the worker; a worker that dies makes a "failed" outcome.

        Args:
            task: what to train.
            params: the trial's Optuna parameters (the worker builds with a FixedTrial of them).
            hp_config: instead of ``params``, the trial's keras-tuner HyperParameters (their
                ``get_config()``; the worker builds with ``HyperParameters.from_config``).
            reporter: the engine's pruning question, asked after every epoch.
            deadline: ``time.monotonic()`` after which training stops at the next epoch end.
            tick: called about once a second while the trial runs (Optuna's heartbeat).

        Raises:
            SegsearchError: a configuration error in the worker (raised again here).
            KeyboardInterrupt: the worker is stopped and the interrupt goes on.
        """
        from segsearch.engines.trial import now_iso

        started = now_iso()
        t0 = time.monotonic()
        self.start()
        # a worker started for this trial (here, or just before by the engine) counts in it
        start_s, self.pending_start_s = self.pending_start_s or 0.0, None
        conn = self.conn
        try:
            conn.send(("trial", task, params, reporter is not None, deadline, hp_config))
            while True:
                if tick is not None:
                    tick()
                if not conn.poll(1.0):
                    if not self.process.is_alive():
                        return self._died(task, started, t0)
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return self._died(task, started, t0)
                kind = message[0]
                if kind == "event":
                    if self.on_event is not None:
                        self.on_event(message[1])
                elif kind == "report":
                    stop = bool(reporter(message[1], message[2])) if reporter else False
                    conn.send(("prune", stop))
                elif kind == "outcome":
                    outcome = message[1]
                    timings = getattr(outcome, "timings", None)
                    if isinstance(timings, dict):  # what the driver saw beyond the worker's
                        timings["worker_start"] = start_s
                        timings["driver_total"] = round(time.monotonic() - t0, 3)
                    self._after_trial()
                    return outcome
                elif kind == "error":
                    raise message[1]
        except BaseException as e:
            # interrupted (or an error): the trial is left to the engine's recovery; a worker that
            # sent an error is idle, an interrupted one is in its trial
            self.close(busy=not _sent_by_worker(e))
            raise

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the worker and return its result: what the driver
        must not do itself because it would initialise the GPU (the export: it loads the model
        and scores it). ``function`` is module-level (pickled by name), the arguments and the
        result picklable; the worker's progress events are forwarded.

        Raises:
            SegsearchError: what ``function`` raised (others come as a StudyError naming them).
            StudyError: the worker died.
        """
        from segsearch.errors import StudyError

        self.start()
        conn = self.conn
        try:
            conn.send(("call", function, args, kwargs))
            while True:
                if not conn.poll(1.0):
                    if not self.process.is_alive():
                        break
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "event":
                    if self.on_event is not None:
                        self.on_event(message[1])
                elif message[0] == "result":
                    return message[1]
                elif message[0] == "error":
                    raise message[1]
        except BaseException as e:
            self.close(busy=not _sent_by_worker(e))
            raise
        process = self.process
        process.join(10)
        code = process.exitcode
        self.close()
        raise StudyError(f"the worker process died ({describe_exit(code)}) while it ran "
                         f"{getattr(function, '__name__', function)}; run the same command again")

    def _after_trial(self) -> None:
        """Count the trial, report the worker's memory, and recycle it when it is due."""
        self.trials += 1
        pid = self.pid
        rss = None if pid is None else process_rss_mib(pid)
        growth = None if rss is None or self.ready_rss_mib is None else rss - self.ready_rss_mib
        event = {"event": "worker_memory", "pid": pid, "trials": self.trials,
                 "rss_mib": None if rss is None else round(rss, 1),
                 "growth_mib": None if growth is None else round(growth, 1)}
        if self.on_event is not None:
            self.on_event(event)
        reason = None
        if self.max_trials is not None and self.trials >= self.max_trials:
            reason = f"it trained {self.trials} trials (train.worker_max_trials)"
        elif self.max_growth_mb is not None and growth is not None and self.trials > 1 and \
                growth >= self.max_growth_mb:
            reason = (f"its memory grew by {growth:.0f} MiB since its first trial "
                      "(train.worker_max_growth_mb)")
        if reason is None:
            if self.trials == 1 and rss is not None:
                # what the first trial loads (the GPU libraries, JAX's compiled kernels: over
                # 2 GiB under JAX on a CPU) is the worker's start-up, not a leak: growth counts
                # from here, so the worker stays warm
                self.ready_rss_mib = rss
            return
        self.close()  # the next trial starts a fresh worker
        if self.on_event is not None:
            self.on_event({**event, "event": "worker_recycle", "reason": reason})

    def _died(self, task: TrialTask, started: str, t0: float) -> TrialOutcome:
        from segsearch.engines.trial import TrialOutcome, now_iso, write_error_file

        process = self.process
        process.join(10)
        code = process.exitcode
        self.close()
        if task.phase == "final":
            reason = f"the final training's worker process died ({describe_exit(code)})"
        else:
            reason = f"the trial's worker process died ({describe_exit(code)})"
        outcome = TrialOutcome(
            state="failed",
            reason=reason,
            started=started,
            finished=now_iso(),
            duration_s=round(time.monotonic() - t0, 3),
            crashed=True,
            failure="environment",
            error=f"No Python traceback: the process ended ({describe_exit(code)}) while it "
                  f"trained trial {task.number}; what it wrote to stderr is above in the "
                  "terminal. The next trial starts a new worker.",
        )
        write_error_file(task.out_dir, outcome)
        return outcome


# ---------------------------------------------------------------------------------- the worker
def _die_with_parent(parent_thread_lives: bool = True) -> None:
    """Kill this process when its parent dies (kill -9 of the driver).

    Linux's ``PR_SET_PDEATHSIG`` fires when the *thread* that started the process ends, so it is
    used only for a worker started by the driver's main thread; a worker started by one of the
    engine's worker threads (``search.workers`` > 1), which end with the search while the worker
    still has the final training and the export to do, watches its parent instead (once a
    second, a daemon thread).

    Args:
        parent_thread_lives: the thread that started this process lives as long as the driver.
    """
    if parent_thread_lives:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            return
        except (OSError, AttributeError):
            pass

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="segsearch-parent-watch", daemon=True).start()


def _backend_memory(slot: Any) -> dict[str, Any]:
    """The backend's memory settings for the worker's slot (TensorFlow's memory growth or a
    memory cap, PyTorch's fraction: :func:`segsearch.devices.configure_backend_memory`)."""
    from segsearch.devices import configure_backend_memory

    try:
        return configure_backend_memory(slot)
    except Exception:  # noqa: BLE001 - already initialised: its settings stay
        return {"memory_growth": []}


def compilation_cache(study_dir: Any) -> str | None:
    """Turn on JAX's persistent compilation cache in ``<study>/cache/jax`` (backend jax only): a
    network compiled once, by any worker or an earlier run of the study, is read back instead of
    compiled again. Returns the folder, or None (another backend, or a JAX without it).

    TensorFlow's XLA (``train.jit_compile``, on a GPU by default) keeps its own in
    ``<study>/cache/tf_xla``, set in the worker's environment
    (:func:`segsearch.devices.worker_environment`).

    Args:
        study_dir: the study folder.
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    folder = os.path.join(str(study_dir), "cache", "jax")
    try:
        os.makedirs(folder, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", folder)
        # the small networks of a search compile in well under JAX's default 1 s threshold
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except (OSError, AttributeError, ValueError):
        return None
    return folder


def _worker_main(conn: Any, config: Any, env: dict[str, str], prepare: Callable[..., Any],
                 slot: Any = None, facts: dict[str, Any] | None = None) -> None:
    # before any backend import (the spawn child has imported none: see backends_imported)
    from segsearch.devices import backends_imported

    early = backends_imported()
    from segsearch import heap

    heap.own_process()  # the worker is segsearch's, start to end: cheaper collections
    os.environ.update(env)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    sys.unraisablehook = _reraise_stop(sys.unraisablehook)
    _die_with_parent(bool((facts or {}).get("main_thread", True)))
    try:
        from segsearch.devices import ENV_NAMES

        effective = {name: os.environ.get(name) for name in ENV_NAMES}
        _serve(conn, config, prepare, slot, {"environment": effective,
                                             "backends_before_env": early})
    except _Stopped:
        return  # SIGTERM (the driver stops, or a batch scheduler): the trial was cut off cleanly


class _Stopped(BaseException):
    """Raised in the worker by SIGTERM: unwinds the trial (removing its temporary files)."""


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    raise _Stopped


def _reraise_stop(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook: a SIGTERM that landed where Python ignores exceptions (a
    weakref callback, a __del__) is raised again, so the worker still stops, quietly."""

    def handle(info: Any) -> None:
        if isinstance(info.exc_value, _Stopped):
            signal.signal(signal.SIGTERM, _stop_on_sigterm)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        hook(info)

    return handle


def _sent_by_worker(error: BaseException) -> bool:
    """Whether ``error`` is one the worker sent (it is then idle, waiting for the next trial)."""
    from segsearch.errors import SegsearchError

    return isinstance(error, SegsearchError)


def _serve(conn: Any, config: Any, prepare: Callable[..., Any], slot: Any = None,
           facts: dict[str, Any] | None = None) -> None:
    from segsearch.console import import_tensorflow_quietly
    from segsearch.errors import SegsearchError, StudyError, os_error_message

    import_tensorflow_quietly()
    try:
        from segsearch.devices import Slot, backend_devices

        memory = _backend_memory(slot if slot is not None else Slot())
        cache = compilation_cache(config.study_dir)
        import keras_tuner
        import optuna

        from segsearch.engines.hp import OptunaHyperParameters
        from segsearch.engines.trial import run_trial

        hypermodel, context = prepare(config, lambda event: conn.send(("event", event)))
    except SegsearchError as e:
        conn.send(("error", e))
        return
    except Exception as e:  # noqa: BLE001 - e.g. a missing module: said once, in the driver
        from segsearch.engines.trial import error_reason

        message = error_reason("starting the trial worker process", e)
        path = os.path.join(str(config.study_dir), WORKER_ERROR_FILE)
        try:  # the full traceback beside the study's files
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
            message += f" (traceback: {path})"
        except OSError:
            pass
        conn.send(("error", StudyError(message)))
        return
    devices = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
               **memory, "devices": backend_devices(), "compilation_cache": cache,
               "sharing": getattr(slot, "sharing", 1), **(facts or {})}
    conn.send(("ready", os.getpid(), devices))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "call":
            _call(conn, *message[1:])
            continue
        if message[0] != "trial":
            return
        _, task, params, prune, deadline, hp_config = message
        context.deadline = deadline

        def reporter(epoch: int, value: float) -> bool:
            conn.send(("report", epoch, value))
            answer = conn.recv()
            return bool(answer[1])

        def build(params: dict[str, Any] | None = params,
                  hp_config: dict[str, Any] | None = hp_config) -> Any:
            if hp_config is not None:
                return hypermodel.build(keras_tuner.HyperParameters.from_config(hp_config))
            hp = OptunaHyperParameters(optuna.trial.FixedTrial(dict(params or {})))
            return hypermodel.build(hp)

        try:
            outcome = run_trial(context, build, task, reporter if prune else None)
        except SegsearchError as e:
            conn.send(("error", e))
            continue
        except OSError as e:  # the study folder cannot be written: no trial would escape it
            conn.send(("error", StudyError(os_error_message(e))))
            continue
        conn.send(("outcome", outcome))


def _call(conn: Any, function: Callable[..., Any], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> None:
    """Run a function the driver sent (:meth:`TrialWorker.call`) and send back its result."""
    from segsearch.engines.trial import error_reason
    from segsearch.errors import SegsearchError, StudyError, os_error_message

    try:
        result = function(*args, **kwargs)
    except SegsearchError as e:
        conn.send(("error", e))
    except OSError as e:
        conn.send(("error", StudyError(os_error_message(e))))
    except Exception as e:  # noqa: BLE001 - said in the driver, with where it came from
        conn.send(("error", StudyError(error_reason(
            f"running {getattr(function, '__name__', function)} in the worker process", e))))
    else:
        conn.send(("result", result))
