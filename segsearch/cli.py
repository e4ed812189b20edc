"""The ``segsearch`` command: run a search, look at a study, export and use its best model.

    segsearch run spaces/resunet.yaml            # or a shipped space by name: segsearch run resunet
    segsearch status studies/resunet             # the trials, best first
    segsearch export studies/resunet             # (re)write studies/resunet/best/
    segsearch predict studies/resunet/best images/ --out masks/
    segsearch data check path/to/data            # are the images and masks usable?
    segsearch spaces                             # the space files that ship with segsearch

Nothing heavy is imported at module level: ``segsearch --help`` and every subcommand's help answer
without TensorFlow, Keras, Optuna or keras-tuner. A user error (any SegsearchError, a missing file,
bad YAML, a file that cannot be written, a storage that cannot be used, a full disk) prints one
line, ``segsearch: error: <message>``, and exits with status 2; Ctrl-C exits with status 130 and
SIGTERM with 143, both saying how to resume. A closed output pipe (``segsearch status DIR |
head -1``) ends quietly. A ``run`` whose final training failed exports the best trial's
checkpoint, says so in one line and exits with status 3; running it again retries the final
training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TextIO

from segsearch import __version__
from segsearch.console import TextProgress
from segsearch.console import format_duration as _duration
from segsearch.console import format_number as _number
from segsearch.console import format_params as _params
from segsearch.console import import_tensorflow_quietly as _import_tensorflow_quietly
from segsearch.console import plural as _plural
from segsearch.jsonable import jsonable

__all__ = ["main", "build_parser", "run_sets", "TextProgress", "JsonProgress", "format_trials",
           "Terminated"]

EXIT_USER_ERROR = 2
#: ``run``: the search finished but the final training failed (run again to retry it).
EXIT_FINAL_FAILED = 3
EXIT_INTERRUPTED = 130
#: 128 + SIGTERM, what a shell reports for a process SIGTERM ended.
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the run stops the way Ctrl-C stops it (the trial is
    recorded as cut off, the worker process ends, the study can be resumed)."""


# ----------------------------------------------------------------------------------- formatting
#: how the status summary names a state (a stale trial is one a kill cut off).
_STATE_WORDS = {"stale": "stale (cut off)"}


def _sort_best(trials: Sequence[Any], direction: str) -> list[Any]:
    from segsearch.records import sort_best

    return sort_best(trials, direction)


def format_trials(trials: Sequence[Any], objective: str = "objective",
                  direction: str = "maximize", limit: int | None = None,
                  front: Collection[int] | None = None) -> str:
    """A text table of trials, best first: number, state, objective, epochs, time, hyperparameters.

    Args:
        trials: TrialRecord objects (segsearch.records).
        objective: the objective's name, for the column header.
        direction: "maximize" or "minimize".
        limit: show at most this many rows.
        front: the trial numbers on the Pareto front (several objectives), marked "*" after the
            state; None: no marks.
    """
    rows = _sort_best(trials, direction)[:limit]
    header = ["#", "state", objective, "epochs", "time", "hyperparameters"]
    table = [header]
    for t in rows:
        params = dict(t.params or {})
        if t.architecture and "architecture" not in params:
            params = {"architecture": t.architecture, **params}
        text = _params(params)
        if t.state in ("infeasible", "failed", "stale") and t.reason:
            text = f"({_short_reason(t.reason)}) {text}"
        state = f"{t.state} *" if front is not None and t.number in front else t.state
        table.append([str(t.number), state, _number(t.value),
                      "-" if t.epochs is None else str(t.epochs), _duration(t.duration_s), text])
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = []
    for r in table:
        cells = [c.rjust(w) if i in (0, 2, 3, 4) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r[:-1], widths))]
        lines.append("  ".join(cells + [r[-1]]).rstrip())
    return "\n".join(lines)


def _short_reason(reason: Any, limit: int = 140) -> str:
    """A trial's reason for the table: its first line when short, else its first clause (up to
    ";"), cut at a word if still long."""
    text = str(reason).splitlines()[0]
    if len(text) <= limit:
        return text
    text = text.split("; ")[0]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


# ----------------------------------------------------------------------------------- progress
class JsonProgress:
    """One JSON object per line per event, for scripts (``segsearch run --json``).

    Args:
        stream: where to write (stdout).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Write ``event`` as one line of JSON."""
        self.stream.write(json.dumps(jsonable(event, keep_nan=True)) + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------------- commands
def run_sets(args: argparse.Namespace) -> list[str | tuple[str, str]]:
    """The overrides of a ``run`` command line for ``load_config(sets=...)``: its ``--set``
    items, then (flag, "key=value") for the flags that stand for a key, so messages name the
    flag the user typed (``--workers 3``), not a ``--set`` they did not."""
    sets: list[str | tuple[str, str]] = list(args.set or ())
    if getattr(args, "workers", None):
        sets.append((f"--workers {args.workers}", f"search.workers={args.workers}"))
    if getattr(args, "gpus", None):
        sets.append((f"--gpus {args.gpus}", f"search.gpus={json.dumps(str(args.gpus))}"))
    if getattr(args, "workers_per_gpu", None):
        sets.append((f"--workers-per-gpu {args.workers_per_gpu}",
                     f"search.workers_per_gpu={args.workers_per_gpu}"))
    return sets


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from segsearch.spacefile import load_config

    sets = run_sets(args)
    options = dict(sets=sets, data=args.data, trials=args.trials, epochs=args.epochs,
                   image_size=args.image_size, engine=args.engine, study_dir=args.study_dir,
                   storage=args.storage)
    load_config(args.space, check_space=False, **options)  # the quick checks, before TensorFlow
    _import_tensorflow_quietly()
    config = load_config(args.space, **options)
    args._study_dir = config.study_dir
    args._storage = config.storage or f"sqlite:///{Path(config.study_dir) / 'study.db'}"
    objective = config.search.objectives[0]
    out = sys.stdout
    if args.json:
        progress: Callable[[Mapping[str, Any]], None] = JsonProgress(out)
    elif args.quiet:
        progress = _ignore
    else:
        progress = TextProgress(objective, out, direction=config.search.directions[0])
        search = config.search
        algo = search.algorithm + (f" + {search.pruner} pruning" if search.pruner != "none" else "")
        arch = config.architecture or "any of " + ", ".join(config.architectures)
        budget = (
            f"{_plural(search.trials, 'trial')} x up to {_plural(config.train.epochs, 'epoch')}"
        )
        print(f"segsearch {__version__}: study {config.study!r} ({arch}) in {config.study_dir}\n"
              f"  {budget}, {search.engine} {algo}, objective {', '.join(search.objectives)} "
              f"({', '.join(search.directions)})", flush=True)

    from segsearch.driver import Study

    study = Study(config, fresh=args.fresh, rebuild_storage=args.rebuild_storage)
    results = study.run(progress=progress)

    objective_text = f"{objective} {_number(results.best_value)}"
    from segsearch.scores import baseline_text, warning_text

    warning = warning_text(results.verdict, objective)
    if args.json:
        progress({"event": "result", "best_value": results.best_value,
                  "selection_value": results.selection_value,
                  "baseline": results.baseline, "verdict": results.verdict,
                  "best_params": results.best_params, "best_model_path": results.best_model_path,
                  "study_dir": results.study_dir, "trials": [t.to_dict() for t in results.trials],
                  "final_failed": results.final_failed, "final_retry": results.final_retry,
                  "cross_validation": results.cross_validation,
                  **({"pareto_front": [t.number for t in results.pareto_front],
                      "pick": results.pick} if results.pick else {})})
    elif args.quiet:
        print(f"{objective_text}  {results.best_model_path}")
    else:
        front = [t.number for t in results.pareto_front] if results.pick else None
        if results.trials:
            print("\nBest trials:")
            print(format_trials(results.trials, objective, config.search.directions[0], limit=5,
                                front=front))
        if results.pick:
            print(f"Pareto front (marked *): trials {', '.join(str(n) for n in front or ())}; "
                  f"export.pick {_rule_word(results.pick['rule'])}: trial "
                  f"#{results.pick['trial']}")
        chose = results.selection_value
        if chose is not None and results.best_value is not None and chose != results.best_value:
            objective_text += (" (the exported model on the validation images; the moving "
                               f"average that chose it: {_number(chose)})")
        print(f"\nBest {objective_text}\nBest model: {results.best_model_path}\n"
              f"Study: {results.study_dir} (segsearch status {results.study_dir})")
        from segsearch.folds import summary_lines

        for line in summary_lines(results.cross_validation):
            print(line)
        text = baseline_text({"best": results.baseline}, objective)
        if text and results.verdict:
            print(f"Baseline: {text}; margin {results.verdict['margin']:+.4f} "
                  f"(a clear margin is {results.verdict['needed']:.4f})")
    if warning and not args.json:
        sys.stdout.flush()
        sys.stderr.write(warning + "\n")
    return _final_training_status(results)


def _final_training_status(results: Any) -> int:
    """Say (one line on stderr) when the final training failed; the exit status of ``run``.

    A failure the next run retries (the worker died, an error) exits with EXIT_FINAL_FAILED; a
    final training that diverged is only a warning (running again would diverge again).
    """
    if not results.final_failed:
        return 0
    sys.stdout.flush()
    trial = f" (trial #{results.best_trial})" if results.best_trial is not None else ""
    reason = _one_line(results.final_failed)
    model = results.best_model_path
    if results.final_retry:
        sys.stderr.write(f"segsearch: error: the final training of the best configuration{trial} "
                         f"failed: {reason}. The best trial's checkpoint was exported instead "
                         f"({model}); run the same command again to retry the final training\n")
        return EXIT_FINAL_FAILED
    sys.stderr.write(f"segsearch: warning: the final training of the best configuration{trial} "
                     f"failed: {reason}. The best trial's checkpoint is the model ({model}); it is "
                     "not retried\n")
    return 0


def _ignore(event: Mapping[str, Any]) -> None:
    """Progress callback that shows nothing (--quiet)."""


def _open_study(path: str, *, needs_tensorflow: bool) -> Any:
    from pathlib import Path

    if not Path(path).is_dir():
        from segsearch.errors import StudyError, similar_path

        raise StudyError(f"{path}: no such study folder{similar_path(path)}; give the folder a "
                         "`segsearch run` wrote, e.g. studies/resunet")
    if needs_tensorflow:
        _import_tensorflow_quietly()
    from segsearch.driver import Study

    return Study.open(path)


def _storage_of(study: Any) -> str:
    """The study's storage URL (a storage error names it)."""
    from pathlib import Path

    return study.config.storage or f"sqlite:///{Path(study.config.study_dir) / 'study.db'}"


def _cmd_status(args: argparse.Namespace) -> int:
    from segsearch.records import STATES

    study = _open_study(args.study_dir, needs_tensorflow=False)
    args._storage = _storage_of(study)
    trials = list(study.trials())
    objective = study.config.search.objectives[0]
    direction = study.config.search.directions[0]
    extra = _status_summary(study, trials, objective, direction)
    pareto = _status_pareto(study, trials)
    extra["lines"] += pareto["lines"]
    extra["data"].update(pareto["data"])
    if args.json:
        ordered = _sort_best(trials, direction)
        report = {"study_dir": str(args.study_dir), "objective": objective,
                  "direction": direction, "trials": [t.to_dict() for t in ordered],
                  **extra["data"]}
        print(json.dumps(jsonable(report, keep_nan=True)))
        return 0
    if not trials:
        print(f"{args.study_dir}: no trials yet")
        return 0
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    summary = ", ".join(f"{n} {_STATE_WORDS.get(s, s)}" for s, n in sorted(
        counts.items(), key=lambda kv: STATES.index(kv[0]) if kv[0] in STATES else 9))
    print(f"{args.study_dir}: {len(trials)} trials ({summary}); objective {objective} "
          f"({direction})")
    print(format_trials(trials, objective, direction, front=pareto["data"].get("pareto_front")))
    for line in extra["lines"]:
        print(line)
    if getattr(args, "verbose", False):
        _print_timings(trials)
    return 0


def _print_timings(trials: Sequence[Any]) -> None:
    """``status --verbose``: where each trial's seconds went (its record's timings)."""
    from segsearch.console import format_timings

    lines = [(t.number, format_timings(getattr(t, "timings", None))) for t in trials]
    lines = [(n, text) for n, text in lines if text]
    if not lines:
        return
    print("\nWhere the trials' time went:")
    for number, text in sorted(lines):
        batch = next((t.batch_size for t in trials if t.number == number), None)
        retried = f" (at batch size {batch})" if batch else ""
        print(f"  #{number}{retried}: {text}")


def _status_summary(study: Any, trials: Sequence[Any], objective: str,
                    direction: str) -> dict[str, Any]:
    """What `status` adds under the table: the best trial's value beside the value after the final
    training and the exported one, the trivial baseline, and the warning when the model does not
    beat it clearly. Reads final/final.json, best/metrics.yaml and baseline.json; no TensorFlow."""
    from pathlib import Path

    import yaml

    from segsearch.scores import baseline_text, judge, read_baseline, warning_text

    folder = Path(study.dir)
    lines: list[str] = []
    data: dict[str, Any] = {}
    best = next((t for t in _sort_best(trials, direction)
                 if t.state == "complete" and t.value is not None), None)
    final = exported = None
    try:
        final = json.loads((folder / "final" / "final.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    try:
        stored = yaml.safe_load((folder / "best" / "metrics.yaml").read_text(encoding="utf-8"))
        exported = ((stored or {}).get("objective") or {}).get("value")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    if best is not None:
        text = f"Best trial #{best.number}: {objective} {_number(best.value)} (moving average)"
        if final and final.get("trial") == best.number and final.get("epochs"):
            kept = "final weights kept" if str(final.get("model", "")).startswith("final") else \
                "trial checkpoint kept"
            own = final.get("final_best")
            own_text = f", its own best {_number(own)}" if own is not None else ""
            text += (f"; after final training ({_plural(final['epochs'], 'more epoch')}{own_text}"
                     f"): {_number(final.get('value'))}, {kept}")
            data["final"] = {k: final.get(k) for k in ("trial", "epochs", "value", "trial_value",
                                                        "final_best", "model")}
        lines.append(text)
    from segsearch.folds import summary, summary_lines

    report = summary(folder, study.config, trials, study.objective)
    if report is not None and report.get("configurations"):
        lines += summary_lines(report)
        data["cross_validation"] = report
    if exported is not None:
        lines.append(f"Exported model: {objective} {_number(exported)} on the validation images "
                     "(best/metrics.yaml)")
        data["exported_value"] = exported
    baseline = read_baseline(folder)
    best_constant = (baseline or {}).get("best")
    if best_constant:
        value = exported if exported is not None else (
            final.get("value") if final and best is not None and final.get("trial") == best.number
            else (best.value if best is not None else None))
        verdict = judge(value, best_constant.get(objective), direction)
        text = baseline_text(baseline, objective)
        margin = (f"; margin {verdict['margin']:+.4f} (clear from {verdict['needed']:.4f})"
                  if verdict else "")
        lines.append(f"Baseline: {text}{margin}")
        warning = warning_text(verdict, objective)
        if warning:
            lines.append(warning)
        data.update(baseline=best_constant, verdict=verdict)
    return {"lines": lines, "data": data}


def _status_pareto(study: Any, trials: Sequence[Any]) -> dict[str, Any]:
    """What `status` shows of a study with several objectives: the Pareto front (each trial's
    objectives) and the trial export.pick picks; nothing with one objective."""
    from segsearch.errors import StudyError
    from segsearch.pareto import objective_values, rule_text

    objective = study.objective
    if len(objective.names) < 2:
        return {"lines": [], "data": {}}
    front = study.pareto_front(trials)
    complete = sum(t.state == "complete" for t in trials)
    data: dict[str, Any] = {"objectives": list(objective.names),
                            "directions": list(objective.directions),
                            "pareto_front": [t.number for t in front]}
    lines = [f"Pareto front: {len(front)} of {_plural(complete, 'complete trial')} (marked * "
             f"above), " + ", ".join(f"{n} ({d})" for n, d in zip(objective.names,
                                                                  objective.directions))]
    table = [["#", *objective.names]] + [
        [str(t.number), *(_number(v) for v in objective_values(t, objective) or ())]
        for t in front]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in table]
    rule = study.config.export.pick
    try:
        chosen = study.pick(trials) if front else None
    except StudyError as e:
        lines.append(str(e))
        data["pick"] = {"rule": rule, "error": str(e)}
    else:
        if chosen is not None:
            lines.append(f"export.pick {_rule_word(rule)}: trial #{chosen.trial.number} "
                         f"({rule_text(rule)})")
            data["pick"] = chosen.to_dict()
    return {"lines": lines, "data": data}


def _rule_word(rule: Any) -> str:
    if isinstance(rule, Mapping):
        return "{" + ", ".join(f"{k}: {v:g}" for k, v in rule.items()) + "}"
    return str(rule)


def _cmd_export(args: argparse.Namespace) -> int:
    formats = None
    if args.formats is not None:
        from segsearch.errors import ConfigError
        from segsearch.spacefile import ExportConfig

        try:
            formats = ExportConfig(formats=args.formats).formats
        except ConfigError as e:
            raise ConfigError(f"--formats {args.formats}: {getattr(e, 'detail', e)}") from None
    study = _open_study(args.study_dir, needs_tensorflow=True)
    args._storage = _storage_of(study)
    from segsearch.formats import read_checks, require, summary_lines, warning_lines

    if formats is not None:
        require(formats, where="--formats")  # a missing extra: said before anything is written
    path = study.export(formats=formats)
    print(f"Exported the best model to {path}")
    checks = read_checks(path)
    for line in summary_lines(checks):
        print(line)
    sys.stdout.flush()
    for line in warning_lines(checks):
        sys.stderr.write(f"segsearch: {line}\n")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from segsearch.predict import describe_choices, find_model, predict

    find_model(args.model)  # a wrong path fails before TensorFlow loads
    _import_tensorflow_quietly()
    written = predict(args.model, args.images, args.out, overlay=args.overlay,
                      threshold=args.threshold, image_size=args.image_size, masks=args.masks,
                      tta=args.tta, postprocess=args.postprocess)
    if not args.quiet:
        masks = [p for p in written if not p.name.endswith("_overlay.png")]
        overlays = len(written) - len(masks)
        extra = f" and {_plural(overlays, 'overlay')}" if overlays else ""
        print(f"Wrote {_plural(len(masks), 'mask')}{extra} to {args.out}: "
              f"{describe_choices(args.model, args.tta, args.postprocess, args.threshold)}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from segsearch.data.check import check
    from segsearch.spacefile import load_config

    # the data: section exactly as `run` builds it (same keys, same checks, same messages)
    space: Any = args.space if args.space else {"architecture": "unet"}
    config = load_config(space, sets=list(args.set or ()), data=args.path, check_space=False)
    report = check(config.data)
    planned = _auto_plan(space, args) if report.ok else []
    if args.json:
        print(json.dumps(jsonable({**report.to_dict(), "auto": planned}, keep_nan=True)))
    else:
        print(report.format())
        if planned:  # what run would choose here: it knows the device, the suggestion does not
            print("on this machine, `segsearch run ... --image-size auto` would use:")
            for choice in planned:
                print(f"  {choice['key']}: {choice['value']}  ({choice['reason']})")
    if report.ok:
        return 0
    sys.stdout.flush()
    sys.stderr.write(f"segsearch: error: {_one_line(report.stop or report.errors[0])}\n")
    return EXIT_USER_ERROR


def _auto_plan(space: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The choices ``data.image_size: auto`` and ``train.batch_size: auto`` make for this data
    on this machine (:mod:`segsearch.autoconf`), as ``run --image-size auto`` prints them."""
    from segsearch.errors import SegsearchError
    from segsearch.spacefile import load_config

    sets = list(args.set or ()) + ["data.image_size=auto", "train.batch_size=auto"]
    try:
        config = load_config(space, sets=sets, data=args.path, check_space=False)
    except SegsearchError:
        return []  # the report above already says what is wrong
    return [c.to_dict() for c in config.auto]


def _cmd_spaces(args: argparse.Namespace) -> int:
    from segsearch.spacefile import shipped_spaces, spaces_dir

    folder = spaces_dir()
    names = shipped_spaces()
    width = max((len(n) for n in names), default=0)
    for name in names:
        text = (folder / f"{name}.yaml").read_text(encoding="utf-8")
        summary = next((line.lstrip("# ").strip() for line in text.splitlines()
                        if line.startswith("#") and line.lstrip("# ").strip()), "")
        print(f"{name.ljust(width)}  {summary}")
    print(f"\nRun one with `segsearch run NAME`; copy {folder}/NAME.yaml to change it.")
    return 0


# ----------------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") \
            from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _unbalanced(text: str) -> bool:
    return text.count("{") > text.count("}") or text.count("[") > text.count("]")


def _cut_set_value(argv: Sequence[str]) -> tuple[str, str] | None:
    """(the --set argument as the shell cut it, the whole of it) when a --set value opens a ``{`` or
    ``[`` that a later, unquoted word closes (``--set data.values={1: 0, 2: 1}``), else None."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--set" and i + 1 < len(argv):
            value, j = argv[i + 1], i + 2
        elif token.startswith("--set="):
            value, j = token[len("--set="):], i + 1
        else:
            i += 1
            continue
        if _unbalanced(value):
            parts = [value]
            while j < len(argv) and _unbalanced(" ".join(parts)) and not argv[j].startswith("-"):
                parts.append(argv[j])
                j += 1
            return value, " ".join(parts)
        i = j
    return None


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in the same one-line form as every other user error."""

    #: the arguments being parsed (set by ``main``), to explain "unrecognized arguments"
    argv: Sequence[str] | None = None

    def error(self, message: str) -> None:  # type: ignore[override]
        argv = self.argv if self.argv is not None else sys.argv[1:]
        cut = _cut_set_value(argv) if message.startswith("unrecognized arguments") else None
        if cut is not None:
            message = (f"--set {cut[0]} was cut at its spaces by the shell ({message}); "
                       f"quote the whole KEY=VALUE: --set '{cut[1]}'")
        sys.stderr.write(f"segsearch: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``segsearch`` command (cheap: imports nothing heavy)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="segsearch",
        description="Find the best semantic-segmentation network for your images and masks.",
        epilog="examples:\n"
               "  segsearch run spaces/resunet.yaml\n"
               "  segsearch run resunet --data my_data --trials 30 --epochs 40\n"
               "  segsearch status studies/resunet\n"
               "  segsearch predict studies/resunet/best new_images --out masks --overlay\n"
               "\nrun `segsearch COMMAND --help` for each command's options.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"segsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run", help="search a space file (resumes the study when run again)",
        description="Search the networks a space file describes; the best model is exported to\n"
                    "STUDY/best/. Running the same command again resumes the study.",
        epilog="examples:\n"
               "  segsearch run spaces/resunet.yaml\n"
               "  segsearch run resunet --data my_data --image-size 256 --trials 40 --epochs 30\n"
               "  segsearch run unet --engine keras-tuner --set search.algorithm=bayesian\n"
               "  segsearch run unet --set data.val_fraction=0.25 --set 'space.filters=[16,32]'\n"
               "  segsearch run unet --json > events.jsonl",
        formatter_class=fmt,
    )
    run.add_argument("space", metavar="SPACE",
                     help="a space file (.yaml), or the name of a shipped space (see "
                          "`segsearch spaces`)")
    run.add_argument("--data", metavar="DIR",
                     help="the data: a folder with images/ and masks/, an .npz file, or 'sample' "
                          "(sets data.source)")
    run.add_argument("--trials", type=_positive_int, metavar="N",
                     help="number of trials in the study (sets search.trials)")
    run.add_argument("--epochs", type=_positive_int, metavar="N",
                     help="most epochs per trial (sets train.epochs)")
    run.add_argument("--image-size", metavar="N",
                     help="train on NxN images, HxW, or auto: from the data (sets "
                          "data.image_size)")
    run.add_argument("--engine", choices=("optuna", "keras-tuner"),
                     help="search engine (sets search.engine)")
    run.add_argument("--study-dir", metavar="DIR",
                     help="the study's folder (default: studies/<study> in the current folder)")
    run.add_argument("--storage", metavar="URL",
                     help="Optuna storage URL, e.g. postgresql://user@host/db (default: SQLite in "
                          "the study folder); the password is never stored: on resume it comes "
                          "from SEGSEARCH_STORAGE, PGPASSWORD or ~/.pgpass")
    run.add_argument("--workers", type=_positive_int, metavar="N",
                     help="train N trials at once on this machine, each in its own process, "
                          "against the one study (sets search.workers)")
    run.add_argument("--gpus", metavar="IDS",
                     help="GPU ids handed to the workers in turn, e.g. 0,1: each worker sees only "
                          "its own (CUDA_VISIBLE_DEVICES; sets search.gpus); without --workers, "
                          "one worker per GPU (times --workers-per-gpu)")
    run.add_argument("--workers-per-gpu", type=_positive_int, metavar="N",
                     help="N workers share each GPU, each capped at its share of the GPU's "
                          "memory: with --gpus 0,1 and 2, four trials train at once (sets "
                          "search.workers_per_gpu)")
    run.add_argument("--fresh", action="store_true",
                     help="start a new study even if one exists; the old folder is moved aside, "
                          "never deleted")
    run.add_argument("--rebuild-storage", action="store_true",
                     help="the study's storage (study.db, the --storage database or keras_tuner/) "
                          "is missing, empty or unreadable: rebuild its records from the trial "
                          "folders, then resume")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override any key of the space file, e.g. train.batch_size=4 or "
                          "'space.depth=[2,3]' (repeatable; values are YAML)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--quiet", "-q", action="store_true",
                      help="print only the result: best objective value and model path")
    mode.add_argument("--json", action="store_true",
                      help="print one JSON object per progress event, one per line")
    run.set_defaults(func=_cmd_run)

    status = sub.add_parser(
        "status", help="show a study's trials, best first",
        description="Show a study's trials as a table, best first: number, state, objective,\n"
                    "epochs run, time, hyperparameters.",
        epilog="example:\n  segsearch status studies/resunet", formatter_class=fmt)
    status.add_argument("study_dir", metavar="STUDY_DIR", help="the study's folder")
    status.add_argument("--json", action="store_true", help="print the trials as one JSON object")
    status.add_argument("--verbose", "-v", action="store_true",
                        help="also where each trial's time went (start, build, data, first "
                             "step, epochs, checkpoint)")
    status.set_defaults(func=_cmd_status)

    export = sub.add_parser(
        "export", help="(re)write the best model's files into STUDY_DIR/best/",
        description="Write the best model of a study into STUDY_DIR/best/: model.keras, a\n"
                    "SavedModel, hyperparameters, validation metrics, trials.csv and overlays.\n"
                    "Each model file is checked against model.keras on validation images.",
        epilog="examples:\n  segsearch export studies/resunet\n"
               "  segsearch export studies/resunet --formats saved_model,onnx,litert",
        formatter_class=fmt)
    export.add_argument("study_dir", metavar="STUDY_DIR", help="the study's folder")
    export.add_argument("--formats", metavar="LIST", default=None,
                        help="model files to write this time instead of export.formats, of "
                             "keras, saved_model, onnx ('segsearch[onnx]'), litert; keras is "
                             "always written")
    export.set_defaults(func=_cmd_export)

    predict = sub.add_parser(
        "predict", help="write masks for a folder of images with an exported model",
        description="Segment images with an exported model. Masks are PNGs at each image's\n"
                    "original size (binary: 0/255; several classes: class ids). Existing files\n"
                    "in --out are never overwritten.",
        epilog="examples:\n"
               "  segsearch predict studies/resunet/best new_images --out masks\n"
               "  segsearch predict model.keras scan.png --out masks --overlay --threshold 0.4\n"
               "  segsearch predict studies/unet/best test/images --out masks --masks test/masks",
        formatter_class=fmt)
    predict.add_argument("model", metavar="MODEL",
                         help="model.keras, the best/ folder that holds it, or a study folder; "
                              "or the export's model.onnx / model.tflite")
    predict.add_argument("images", metavar="IMAGES", help="a folder of images, or one image file")
    predict.add_argument("--out", required=True, metavar="DIR",
                         help="folder for the masks (created; existing files are kept)")
    predict.add_argument("--overlay", action="store_true",
                         help="also write NAME_overlay.png: image | prediction, every class in "
                              "its colour, a legend with the class names")
    predict.add_argument("--masks", metavar="DIR",
                         help="the images' true masks (same names): the overlays (implied) add "
                              "truth and errors panels and each image's score")
    predict.add_argument("--threshold", type=_threshold, default=None, metavar="T",
                         help="foreground probability threshold for one-class models (default: "
                              "the one the export chose on the validation images, else 0.5)")
    predict.add_argument("--image-size", type=_positive_int, metavar="N",
                         help="resize images to NxN for the model (default: the size it was "
                              "trained at)")
    tta = predict.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None,
                     help="test-time augmentation: average the training augmentation's flips "
                          "and rotations (default: as the export chose on validation)")
    tta.add_argument("--no-tta", dest="tta", action="store_false",
                     help="no test-time augmentation, even where the export chose it")
    predict.add_argument("--no-postprocess", dest="postprocess", action="store_false",
                         help="skip the post-processing the export chose on validation (keep "
                              "the largest component, remove small ones, fill small holes); "
                              "TTA and the threshold still apply")
    predict.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    predict.set_defaults(func=_cmd_predict)

    data = sub.add_parser("data", help="check a data folder",
                          description="Tools for the data a search trains on.")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", parser_class=_Parser)
    check = data_sub.add_parser(
        "check", help="report whether images and masks are usable, and how to fix them",
        description="Check a data folder (images/ + masks/) or an .npz file the way `run` reads\n"
                    "it: pairs, sizes, channels, mask values, classes, ignored pixels. Takes the\n"
                    "data: options of `run` (--set, --space). Exits 2, with the message `run`\n"
                    "would stop with, when `run` could not use the data as it is.",
        epilog="examples:\n  segsearch data check path/to/data\n"
               "  segsearch data check DRIVE --set data.images_dir=training/images \\\n"
               "      --set data.masks_dir=training/1st_manual --set 'data.pair=^(\\d+)_'\n"
               "  segsearch data check my_data --space spaces/unet.yaml",
        formatter_class=fmt)
    check.add_argument("path", metavar="DIR",
                       help="the data folder (images/ + masks/), an .npz file, or 'sample' "
                            "(sets data.source)")
    check.add_argument("--space", metavar="FILE",
                       help="read the data: section of this space file (or shipped space), as "
                            "`segsearch run FILE --data DIR` would")
    check.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a key as `run` does, e.g. data.masks_dir=labels or "
                            "'data.values={1: 0, 2: 1}' (repeatable; values are YAML)")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    check.set_defaults(func=_cmd_data_check)
    data.set_defaults(func=lambda a: _missing_command(data))

    spaces = sub.add_parser("spaces", help="list the space files that ship with segsearch",
                            description="List the shipped space files (`segsearch run NAME`).")
    spaces.set_defaults(func=_cmd_spaces)
    return parser


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USER_ERROR


def _without_passwords(message: str, args: argparse.Namespace) -> str:
    """The message with every storage password in sight (--storage, SEGSEARCH_STORAGE) masked."""
    urls = [getattr(args, "storage", None), os.environ.get("SEGSEARCH_STORAGE")]
    if not any(urls):
        return message
    from segsearch.engines.storage import MASK, mask, secrets

    for url in filter(None, urls):
        message = message.replace(url, mask(url) or "")
        for password in secrets(url):
            message = message.replace(password, MASK)
    return message


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``segsearch`` command and return its exit status.

    0: done; 1: ``data check`` found problems; 2: a user error (one line on stderr: what, where,
    the fix); 130: Ctrl-C; 143: SIGTERM (both say how to resume).

    Args:
        argv: the arguments (default: sys.argv[1:]).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from segsearch.devices import quiet_accelerators

    quiet_accelerators()  # before any backend import: no process takes the GPU's memory ahead
    parser = build_parser()
    parser.argv = list(argv) if argv is not None else sys.argv[1:]  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    from segsearch.errors import SegsearchError

    started = time.monotonic()
    with _sigterm_as_interrupt():
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # here, so that a closed pipe is seen here, not at exit
            return code
        except KeyboardInterrupt as e:
            _flush_stdout()
            terminated = isinstance(e, Terminated)
            how = "terminated (SIGTERM)" if terminated else "interrupted"
            study_dir = getattr(args, "_study_dir", None)
            if args.command == "run":
                where = f" in {study_dir}" if study_dir else ""
                took = _duration(time.monotonic() - started)
                sys.stderr.write(f"\nsegsearch: {how} after {took}; the study{where} is saved: "
                                 "run the same command again to resume it\n")
            else:
                sys.stderr.write(f"\nsegsearch: {how}\n")
            return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
        except BrokenPipeError:
            # the reader went away (`segsearch status DIR | head -1`): stop quietly, as Python's
            # documentation of SIGPIPE recommends (stdout to devnull, so the exit flush is quiet)
            _silence_stdout()
            if args.command == "run":
                study_dir = getattr(args, "_study_dir", None)
                where = f" in {study_dir}" if study_dir else ""
                sys.stderr.write(f"segsearch: error: the output was closed (broken pipe); the "
                                 f"study{where} is saved: run the same command again to resume "
                                 "it\n")
            return EXIT_USER_ERROR
        except Exception as e:
            message = str(e) if isinstance(e, SegsearchError) else _known_error(e, args)
            if message is None:
                raise  # a bug: the traceback is for it
            _flush_stdout()
            sys.stderr.write(f"segsearch: error: {_one_line(_without_passwords(message, args))}\n")
            return EXIT_USER_ERROR


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Any:
    """While the command runs, SIGTERM raises :class:`Terminated` in the main thread (a second
    SIGTERM ends the process at once)."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a thread): left as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()


def _silence_stdout() -> None:
    """Point stdout at devnull (a closed pipe): nothing more is written, the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _known_error(error: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for an error that is the environment's, not a bug (None: a bug).

    A file that cannot be read or written (OSError: a full disk, no permission, a read-only file
    system, a symbolic link loop), a storage that cannot be used, running out of memory.
    """
    from segsearch.errors import os_error_message

    storage = _storage_error(error)
    if storage is not None:
        return _storage_message(storage, getattr(args, "_storage", None))
    if isinstance(error, OSError):
        return os_error_message(error)
    if isinstance(error, MemoryError):
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "MemoryError"
        return (f"out of memory: {detail}; use a smaller data.image_size (--image-size), "
                "train.batch_size or data.sample_count")
    return None


def _storage_error(error: BaseException) -> BaseException | None:
    """The database error (SQLAlchemy, sqlite3) behind ``error``, if it is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for module, name in (("sqlalchemy.exc", "SQLAlchemyError"), ("sqlite3", "Error")):
            kind = getattr(sys.modules.get(module), name, None)
            if kind is not None and isinstance(current, kind):
                return current
        current = current.__cause__ or current.__context__
    return None


def _storage_message(error: BaseException, url: str | None) -> str:
    """'<file or URL, password masked>: the study's storage cannot be used: <why>; <the fix>'."""
    where, passwords = "the study's storage", []
    if url:
        where, passwords = _mask_url(url)
    original = getattr(error, "orig", None) or error
    detail = next((line.strip() for line in str(original).splitlines() if line.strip()),
                  type(original).__name__)
    for password in passwords:
        detail = detail.replace(password, "***")
    low = detail.lower()
    if "malformed" in low or "not a database" in low or "encrypted" in low:
        fix = ("the SQLite file is damaged: put back a copy from a backup, or rebuild the records "
               "from the trials/ folders with `segsearch run ... --rebuild-storage`")
    elif "locked" in low or "busy" in low:
        fix = ("another process held the database lock for too long: wait for it to finish (or "
               "stop it) and run the same command again")
    elif "unable to open" in low or "readonly" in low or "read-only" in low:
        fix = "the file or its folder cannot be opened for writing: check the path and permissions"
    elif url and not url.startswith("sqlite"):
        fix = ("check that the database server runs and that the host, port, database and user "
               "in the URL are right (the password comes from the URL, SEGSEARCH_STORAGE, "
               "PGPASSWORD or ~/.pgpass)")
    else:
        fix = "check the storage URL and the database"
    return f"{where}: the study's storage cannot be used: {detail}; {fix}"


def _mask_url(url: str) -> tuple[str, list[str]]:
    """(the URL to show, its passwords): an SQLite file as its path, any password as ***."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):], []
    from segsearch.engines.storage import mask, secrets

    return mask(url) or "the storage URL", secrets(url)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
