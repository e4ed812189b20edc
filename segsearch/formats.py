"""The model files beside ``model.keras``: SavedModel, ONNX, LiteRT, each checked against Keras.

``export.formats`` lists what ``best/`` holds (``keras`` is always written: it is the model
segsearch itself loads); each is Keras's own ``model.export(format=...)``:

- ``keras``: ``model.keras`` (``keras.saving.load_model``);
- ``saved_model``: ``saved_model/`` (``tf.saved_model.load(path).serve(x)``);
- ``onnx``: ``model.onnx`` (converted by tf2onnx; run with onnxruntime);
- ``litert``: ``model.tflite`` (run with LiteRT's Interpreter: ``ai_edge_litert`` when installed,
  else ``tf.lite``).

Unset (``None``), the formats are ``keras`` plus ``saved_model`` on the TensorFlow backend (what
segsearch always wrote). ONNX needs the optional extra ``pip install 'segsearch[onnx]'``;
SavedModel, ONNX and LiteRT are written on the TensorFlow backend. :func:`require` says so in one
message before anything is written.

Every file written is run on a few validation images beside the Keras model it came from
(:func:`check`); the largest absolute difference of the probabilities per format goes into
``best/metrics.yaml`` (``formats:``), and one above :data:`TOLERANCE` is a warning in the output
(:func:`summary_lines`, :func:`warning_lines`). :func:`load_runtime` opens an ``.onnx`` or
``.tflite`` file as an object with the few members of a Keras model that ``segsearch predict``
uses (``input_shape``, ``output_shape``, ``predict``, ``predict_on_batch``).

Example:
    >>> from segsearch import formats
    >>> formats.require(["onnx"])          # ConfigError naming the extra when it is missing
    ('keras', 'onnx')
    >>> model = formats.load_runtime("studies/resunet/best/model.onnx")
    >>> model.predict(images).shape        # (N, H, W, classes), as the Keras model gives
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segsearch.errors import ConfigError, SegsearchError, StudyError

__all__ = ["FORMATS", "FILES", "TOLERANCE", "CHECK_IMAGES", "RUNTIME_SUFFIXES", "resolve",
           "require", "write", "check", "samples", "load_runtime", "summary_lines",
           "warning_lines", "read_checks"]

#: every format ``export.formats`` accepts, in the order they are written.
FORMATS: tuple[str, ...] = ("keras", "saved_model", "onnx", "litert")
#: what each format writes in ``best/``.
FILES: dict[str, str] = {"keras": "model.keras", "saved_model": "saved_model",
                         "onnx": "model.onnx", "litert": "model.tflite"}
#: the largest absolute difference of probabilities an exported file may show before a warning.
TOLERANCE = 1e-3
#: validation images (windows, in patch mode) each exported file is checked on.
CHECK_IMAGES = 8
#: model files ``segsearch predict`` runs besides ``.keras``.
RUNTIME_SUFFIXES: tuple[str, ...] = (".onnx", ".tflite")

_KERAS_FORMAT = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
#: (module, pip distribution) a format needs to be written and checked (TensorFlow backend).
_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
}
_EXTRA = {"onnx": "onnx"}


def _backend() -> str:
    import keras

    return str(keras.backend.backend())


def resolve(formats: Sequence[str] | None, backend: str | None = None) -> tuple[str, ...]:
    """The formats to write, ``keras`` first: ``None`` is the default for the backend.

    Args:
        formats: ``export.formats`` (None: keras, plus saved_model on TensorFlow).
        backend: the Keras backend; default: the one in use.
    """
    if formats is None:
        backend = backend or _backend()
        return ("keras", "saved_model") if backend == "tensorflow" else ("keras",)
    wanted = set(formats) | {"keras"}
    return tuple(f for f in FORMATS if f in wanted)


def _missing(fmt: str) -> list[str]:
    return [dist for module, dist in _PACKAGES.get(fmt, ())
            if importlib.util.find_spec(module) is None]


def require(formats: Sequence[str] | None, *, where: str = "export.formats") -> tuple[str, ...]:
    """The formats to write, once it is sure each can be written and checked here.

    Args:
        formats: ``export.formats`` (None: the default).
        where: the key or option that named them, for the message.

    Raises:
        ConfigError: a format this backend cannot write, or one whose packages are missing (the
            message names the extra to install).
    """
    wanted = resolve(formats)
    backend = _backend()
    for fmt in wanted:
        if fmt != "keras" and backend != "tensorflow":
            raise ConfigError(f"{where}: {fmt} is written on the TensorFlow backend only "
                              f"(KERAS_BACKEND is {backend}); run with KERAS_BACKEND=tensorflow "
                              f"or remove {fmt} from {where}")
        missing = _missing(fmt)
        if missing:
            raise ConfigError(f"{where}: {fmt} needs {', '.join(missing)}, not installed; pip "
                              f"install 'segsearch[{_EXTRA[fmt]}]' (or remove {fmt} from "
                              f"{where})")
    return wanted


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The C++ runtimes' start-up lines ("INFO: Created TensorFlow Lite XNNPACK delegate") off:
    they write to file descriptor 2 directly."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Converters' chatter off: Python warnings (tf2onnx's numpy notices, LiteRT's deprecation)
    and tf2onnx's log lines."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write(model: Any, folder: str | os.PathLike[str], formats: Sequence[str]) -> dict[str, str]:
    """Write every format but ``keras`` (the caller saves that one) into ``folder``.

    Args:
        model: the inference copy of the Keras model.
        folder: where to write (the export's temporary folder).
        formats: what :func:`require` returned.

    Returns:
        The files written, by format.

    Raises:
        StudyError: Keras could not convert the model to a format.
    """
    folder = Path(folder)
    written: dict[str, str] = {}
    if any(fmt != "keras" for fmt in formats):
        # called once: Keras's ONNX export refuses a model that never ran (a fresh clone)
        shape = [1, *(int(d) if d else 32 for d in model.input_shape[1:])]
        model(np.zeros(shape, np.float32), training=False)
    for fmt in formats:
        if fmt == "keras":
            continue
        path = folder / FILES[fmt]
        try:
            with _quiet():
                model.export(str(path), format=_KERAS_FORMAT[fmt], verbose=False)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a converter's limit, said in one line
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise StudyError(f"{FILES[fmt]}: Keras could not write the {fmt} export "
                             f"({type(e).__name__}: {detail[:300]}); remove {fmt} from "
                             "export.formats") from e
        written[fmt] = FILES[fmt]
    return written


# ----------------------------------------------------------------------------------- runtimes
def _dims(shape: Sequence[Any]) -> tuple[int | None, ...]:
    """A runtime's shape with its unknown sizes (names, -1, None) as None."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape)


class _Runtime:
    """What ``segsearch predict`` and :func:`check` use of a Keras model, for another runtime."""

    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    path: Path

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, x: np.ndarray, verbose: int = 0, batch_size: int | None = None) -> np.ndarray:
        """The outputs for a batch of images, ``batch_size`` at a time (default 32)."""
        x = np.asarray(x, np.float32)
        step = max(1, int(batch_size or 32))
        return np.concatenate([self.predict_on_batch(x[i:i + step])
                               for i in range(0, len(x), step)], axis=0)


class _OnnxModel(_Runtime):
    def __init__(self, path: Path) -> None:
        import onnxruntime

        self.path = path
        self.session = onnxruntime.InferenceSession(
            str(path), providers=onnxruntime.get_available_providers())
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConfigError(f"{path}: the ONNX model takes {len(inputs)} inputs and gives "
                              f"{len(outputs)} outputs; predict runs one image input to one "
                              "probability output (a segsearch export)")
        self._name = inputs[0].name
        self.input_shape = _dims(inputs[0].shape)
        self.output_shape = _dims(outputs[0].shape)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        return np.asarray(self.session.run(None, {self._name: x})[0], np.float32)


def _interpreter_class() -> Any:
    """LiteRT's Interpreter: ``ai_edge_litert`` when installed, else TensorFlow's ``tf.lite``."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    try:
        import tensorflow as tf

        return tf.lite.Interpreter
    except (ImportError, AttributeError):
        raise ConfigError("running a .tflite model needs LiteRT's interpreter: pip install "
                          "ai-edge-litert") from None


class _LiteRTModel(_Runtime):
    def __init__(self, path: Path) -> None:
        self.path = path
        with _quiet(), _quiet_stderr():  # tf.lite.Interpreter warns that it moved
            self.interpreter = _interpreter_class()(model_path=str(path))
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConfigError(f"{path}: the LiteRT model takes {len(inputs)} inputs and gives "
                              f"{len(outputs)} outputs; predict runs one image input to one "
                              "probability output (a segsearch export)")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        self.input_shape = _dims(inputs[0].get("shape_signature", inputs[0]["shape"]))
        self.output_shape = _dims(outputs[0].get("shape_signature", outputs[0]["shape"]))
        self._shape: tuple[int, ...] | None = None

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self._shape != x.shape:  # the batch (or an unknown size) changed: resize once
            self.interpreter.resize_tensor_input(self._input, list(x.shape))
            with _quiet_stderr():
                self.interpreter.allocate_tensors()
            self._shape = x.shape
        self.interpreter.set_tensor(self._input, x)
        with _quiet_stderr():
            self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._output), np.float32)


class _SavedModel(_Runtime):
    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.path = path
        self._loaded = tf.saved_model.load(str(path))  # held: .serve needs its variables

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._loaded.serve(np.ascontiguousarray(x, np.float32)), np.float32)


def load_runtime(path: str | os.PathLike[str]) -> Any:
    """Open an ``.onnx`` (onnxruntime) or ``.tflite`` (LiteRT) model for ``segsearch predict``.

    Args:
        path: the model file.

    Raises:
        ConfigError: the runtime is not installed (the message names the extra), or the file
            cannot be opened.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError(f"{path}: running an ONNX model needs onnxruntime, not installed; "
                              "pip install 'segsearch[onnx]'")
        opener: Any = _OnnxModel
    elif path.suffix == ".tflite":
        opener = _LiteRTModel
    else:
        raise ConfigError(f"{path}: not an .onnx or .tflite model")
    try:
        return opener(path)
    except SegsearchError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file, said in one line
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{path}: cannot open the model ({type(e).__name__}: {detail[:300]}); "
                          "export it again with `segsearch export STUDY_DIR --formats ...`") \
            from None


class _KerasModel(_Runtime):
    """A Keras model called directly: for a few images, no predict function to trace."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        import keras

        out = self.model(np.ascontiguousarray(x, np.float32), training=False)
        return np.asarray(keras.ops.convert_to_numpy(out), np.float32)


def _runtime(fmt: str, path: Path) -> Any:
    if fmt == "keras":
        import keras

        return _KerasModel(keras.saving.load_model(path, compile=False, safe_mode=True))
    if fmt == "saved_model":
        return _SavedModel(path)
    return load_runtime(path)


# ----------------------------------------------------------------------------------- checks
def samples(part: Any, input_shape: Sequence[int | None],
            count: int = CHECK_IMAGES) -> np.ndarray:
    """Up to ``count`` validation inputs at the model's input size, spread over the part.

    Resize mode: the images themselves. Patch mode: one training-sized window of an image each
    (the part's own tiles; a window past a small image's edge is padded with zeros).

    Args:
        part: the validation part (``segsearch.data.Part``).
        input_shape: the model's input shape (batch, H, W, C).
        count: how many.
    """
    total = len(part)
    if total == 0:
        return np.zeros((0, *[int(d or 1) for d in input_shape[1:]]), np.float32)
    height, width = (int(d) if d else s for d, s in zip(input_shape[1:3], part.size))
    picks = sorted({int(round(v)) for v in np.linspace(0, total - 1, min(count, total))})
    out = []
    for j in picks:
        image = np.asarray(part.item(int(part.owner[j]))[0], np.float32)
        top, left = (int(v) for v in part.offsets[j])
        window = image[top:top + height, left:left + width]
        pad = ((0, height - window.shape[0]), (0, width - window.shape[1]), (0, 0))
        out.append(np.pad(window, pad) if any(p[1] for p in pad) else window)
    return np.stack(out)


def _difference(got: np.ndarray, want: np.ndarray) -> float:
    """The largest absolute difference; NaN where both are NaN counts as agreement."""
    if got.shape != want.shape:
        return float("inf")
    both = np.isnan(got) & np.isnan(want)
    diff = np.where(both, 0.0, np.abs(got.astype(np.float64) - want.astype(np.float64)))
    return float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0.0


def check(model: Any, folder: str | os.PathLike[str], formats: Sequence[str], x: np.ndarray, *,
          tolerance: float = TOLERANCE, windows: bool = False) -> dict[str, Any]:
    """Run each exported file on ``x`` beside the Keras model: the largest difference per format.

    Args:
        model: the Keras model the files were written from.
        folder: the folder holding them.
        formats: the formats written (``keras`` is the reloaded ``model.keras``).
        x: the inputs (N, H, W, C), e.g. from :func:`samples`.
        tolerance: a difference above it is flagged (``within_tolerance: false``).
        windows: ``x`` holds patch-mode windows, not whole images (for the messages).

    Returns:
        ``{"tolerance", "images", "windows", "formats": {format: {"file", "max_abs_difference",
        "within_tolerance"}}}``, what ``best/metrics.yaml`` records under ``formats:``.
    """
    folder = Path(folder)
    x = np.asarray(x, np.float32)
    reference = _KerasModel(model).predict(x, batch_size=8)
    results = {}
    for fmt in formats:
        runtime = _runtime(fmt, folder / FILES[fmt])
        with _quiet():
            got = np.asarray(runtime.predict(x, verbose=0, batch_size=8), np.float32)
        diff = _difference(got, reference)
        results[fmt] = {"file": FILES[fmt], "max_abs_difference": diff,
                        "within_tolerance": bool(diff <= tolerance)}
        del runtime
    return {"tolerance": float(tolerance), "images": int(len(x)), "windows": bool(windows),
            "formats": results}


def read_checks(best_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``formats:`` section of ``best/metrics.yaml``, or None when there is none."""
    import yaml

    try:
        stored = yaml.safe_load((Path(best_dir) / "metrics.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    checks = stored.get("formats") if isinstance(stored, Mapping) else None
    return dict(checks) if isinstance(checks, Mapping) else None


def _number(value: Any) -> str:
    value = float(value)
    return "0" if value == 0 else f"{value:.1e}"


def _inputs(checks: Mapping[str, Any]) -> str:
    """ "6 validation images", or "8 validation windows" in patch mode."""
    count = checks.get("images")
    kind = "windows" if checks.get("windows") else "images"
    return f"{count} validation {kind}"


def summary_lines(checks: Mapping[str, Any] | None) -> list[str]:
    """One line with each file written and its difference to the Keras model.

    Args:
        checks: what :func:`check` returned (or :func:`read_checks` read).
    """
    results = (checks or {}).get("formats") or {}
    if not results:
        return []
    parts = [f"{r['file']} {_number(r['max_abs_difference'])}" for r in results.values()]
    return [f"  files checked against the Keras model on {_inputs(checks)} (largest probability "
            f"difference): {', '.join(parts)}"]


def warning_lines(checks: Mapping[str, Any] | None) -> list[str]:
    """One warning per exported file whose difference is above the tolerance.

    Args:
        checks: what :func:`check` returned (or :func:`read_checks` read).
    """
    checks = checks or {}
    return [f"warning: {r['file']} differs from the Keras model by up to "
            f"{_number(r['max_abs_difference'])} (tolerance {_number(checks.get('tolerance'))}) "
            f"on {_inputs(checks)}; compare its masks with model.keras's "
            "before using it"
            for r in (checks.get("formats") or {}).values() if not r.get("within_tolerance")]
