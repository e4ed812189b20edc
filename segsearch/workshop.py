"""The workshop: what every trial of a study needs, built from its configuration alone.

:class:`Workshop` loads the data with the study's split (``split.json``, drawn once), makes the
hypermodel, the :class:`~segsearch.engines.trial.TrainingContext` every trial shares, and the
constant predictions' baseline, and knows the device facts (XLA on a GPU only). The driver uses
it in its own process; a trial worker process builds the same through :func:`prepare_trials`,
which the driver hands the engines (the engines never import what lies above them).

Example:
    >>> from segsearch.spacefile import load_config
    >>> shop = Workshop(load_config("unet", trials=2, epochs=1))
    >>> hypermodel, context = shop.hypermodel(), shop.training_context()
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segsearch.errors import ConfigError
from segsearch.jsonable import jsonable
from segsearch.records import Objective, atomic_write_text

__all__ = ["Workshop", "prepare_trials", "export_in_worker", "baseline_in_worker", "has_gpu",
           "validation_masks", "SPLIT_FILE", "CLASS_WEIGHTS_FILE"]

#: the study folder's data split, drawn once and reused on every resume.
SPLIT_FILE = "split.json"
#: the study folder's record of the "auto" class weights (train.class_weights).
CLASS_WEIGHTS_FILE = "class_weights.json"

Progress = Callable[[dict[str, Any]], None]


class Workshop:
    """The data, hypermodel and training context of one study (each made once, on first use).

    Args:
        config: the study's :class:`segsearch.spacefile.Config` (``config.study_dir`` holds
            ``split.json`` and ``baseline.json``).
        trains_here: whether this process trains (a trial worker, or ``train.isolation: none``);
            None: unless the trials train in worker processes. A process that does not train
            asks ``nvidia-smi`` about the GPUs, never the backend, so it initialises no GPU.
    """

    def __init__(self, config: Any, *, trains_here: bool | None = None) -> None:
        self.config = config
        if trains_here is None:
            trains_here = getattr(config.train, "isolation", "none") != "process"
        self.trains_here = trains_here
        self.dir = Path(config.study_dir)
        self.objective = Objective(tuple(config.search.objectives), tuple(config.search.directions))
        self._splits: Any = None
        self._hypermodel: Any = None
        self._class_weights_record: dict[str, Any] | None = None  # the "auto" weights, computed
        self.seed_note: str | None = None  # why the seed network cannot be built, if it cannot

    def load_data(self, *, stored_split: bool = True) -> Any:
        """The data with the stored split (the split is drawn once and kept in split.json).

        Args:
            stored_split: read the split from the study folder's split.json when it is there
                (False: draw it anew, for a new study or --fresh).
        """
        if self._splits is not None:
            return self._splits
        from segsearch.data import load

        split_path = self.dir / SPLIT_FILE
        use = stored_split and split_path.exists()
        self._splits = load(self.config.data, split=split_path if use else None)
        if stored_split:
            self.store_split()
        return self._splits

    def baseline(self) -> dict[str, Any] | None:
        """The constant predictions' scores on the validation set (``baseline.json``).

        Computed once from the validation masks with the models' own metric code
        (:func:`segsearch.scores.constant_baselines`) and stored in the study folder; read back
        when it matches the objective and the background class. None when the validation part
        holds no masks.
        """
        from segsearch import scores

        stored = self.stored_baseline()
        if stored is not None:
            return stored
        background = getattr(self.config.data, "background", 0)
        splits = self.load_data()
        masks = validation_masks(splits.val)
        if masks is None:
            return None
        num_classes = int(splits.info.get("num_classes") or self.config.data.num_classes or 1)
        baseline = scores.constant_baselines(
            masks, num_classes, background, objective=self.objective.name,
            direction=self.objective.direction,
            class_names=getattr(self.config.data, "class_names", None))
        baseline["validation_images"] = len(getattr(splits.val, "names", ()) or ())
        if self.dir.is_dir():
            scores.write_baseline(self.dir, jsonable(baseline))
        return baseline

    def stored_baseline(self) -> dict[str, Any] | None:
        """``baseline.json`` when it holds this study's objective and background, else None."""
        from segsearch import scores

        stored = scores.read_baseline(self.dir)
        background = getattr(self.config.data, "background", 0)
        if stored is not None and stored.get("objective") == self.objective.name and \
                stored.get("background", 0) == background and "best" in stored:
            return stored
        return None

    def store_split(self) -> None:
        """Write split.json into an existing study folder that has none yet (and the computed
        class weights' class_weights.json, see :meth:`class_weights`)."""
        split_path = self.dir / SPLIT_FILE
        if self._splits is not None and self.dir.is_dir() and not split_path.exists():
            atomic_write_text(split_path, json.dumps(jsonable(self._splits.split), indent=2) + "\n")
        if self._class_weights_record is not None and self.dir.is_dir():
            atomic_write_text(self.dir / CLASS_WEIGHTS_FILE,
                              json.dumps(jsonable(self._class_weights_record), indent=2) + "\n")

    def hypermodel(self) -> Any:
        """The study's hypermodel (one architecture, or several with "architecture" searched)."""
        if self._hypermodel is not None:
            return self._hypermodel
        from segsearch.hypermodels import for_config

        splits = self.load_data()
        num_classes = int(splits.info.get("num_classes") or self.config.data.num_classes or 1)
        self._hypermodel = for_config(
            self.config, (*splits.train.size, splits.train.channels), num_classes,
            jit_compile=self.jit_compile(), background=getattr(self.config.data, "background", 0),
            class_weights=self.class_weights(num_classes),
        )
        self.seed_note = self._hypermodel.seed_feasibility()
        reason = None if self.seed_note is None else self._hypermodel.feasibility()
        if reason is not None:  # every trial would be infeasible: stop before the study exists
            self._hypermodel = None
            size = "x".join(str(s) for s in splits.train.size)
            raise ConfigError(
                f"{self.config.source}: space: no configuration of the space can be built at "
                f"image size {size}: {reason}. Narrow the space (e.g. a smaller depth: --set "
                "space.depth=...) or change data.image_size"
            )
        return self._hypermodel

    def class_weights(self, num_classes: int) -> dict[str, Any]:
        """The hypermodels' ``class_weights`` option: ``train.class_weights`` with the "auto"
        weights computed from the training masks when the study uses them (its setting or its
        space says auto), recorded in the study folder's ``class_weights.json``.

        Raises:
            ConfigError: ``train.class_weights`` lists another number of weights than classes.
        """
        from segsearch import scores
        from segsearch.hypermodels.base import class_weight_setting
        from segsearch.losses import auto_class_weights, check_class_weights

        value = self.config.train.class_weights
        background = getattr(self.config.data, "background", 0)
        if isinstance(value, tuple):
            try:
                check_class_weights(value, num_classes, background, "train.class_weights")
            except ConfigError as e:
                raise ConfigError(f"{self.config.source}: {e}") from None
        entries = [self.config.space_for(a).get("class_weights")
                   for a in self.config.architectures]
        if value != "auto" and "auto" not in json.dumps(jsonable(entries)):
            return class_weight_setting(value)
        counts = scores.class_counts(validation_masks(self.load_data().train) or (), num_classes)
        weights = auto_class_weights(counts)
        total = max(1.0, float(counts.sum()))
        self._class_weights_record = {
            "method": "inverse square-root class frequency of the training masks, normalised "
                      "to a mean pixel weight of 1",
            "pixels": [int(c) for c in counts],
            "frequencies": [round(float(c) / total, 6) for c in counts],
            "weights": weights}
        self.store_split()  # written now when the study folder exists, else once it is made
        return class_weight_setting(value, auto=weights)

    def jit_compile(self) -> bool:
        """XLA for this study: ``train.jit_compile``, where "auto" means on a GPU only.

        XLA compiles each new network once; on a CPU that costs far more than it saves in a
        search of short trials (measured: 50 s against 6 s for the first epoch of a small U-Net).
        """
        value = self.config.train.jit_compile
        if value != "auto":
            return bool(value)
        if not self.trains_here:
            from segsearch.devices import system_has_gpu

            return system_has_gpu()
        return has_gpu()

    def training_context(self, progress: Progress | None = None, *,
                         deadline: float | None = None) -> Any:
        """The :class:`TrainingContext` every trial of this study shares.

        Args:
            progress: where epoch events go.
            deadline: ``time.monotonic()`` after which training stops at the next epoch end.
        """
        from segsearch.data import batches
        from segsearch.engines.trial import TrainingContext

        config, train = self.config, self.config.train
        splits = self.load_data()
        augment = getattr(config.data, "augment", None)
        seed = int(config.search.seed)
        # patch mode: an epoch is a fixed number of random patches; validation scores whole images
        patch = bool(getattr(splits.train, "crop", False))
        steps = train.steps_per_epoch
        val_callback = None
        if patch:
            from segsearch.data.pipeline import default_steps

            steps = steps or default_steps(splits.train, train.batch_size)
            overlap = float(getattr(config.data, "overlap", 0.5))

            def val_callback() -> Any:
                from segsearch.sliding import SlidingValidation, part_images

                return SlidingValidation(*part_images(splits.val), overlap=overlap,
                                         batch_size=train.batch_size)
        epoch_steps = steps or math.ceil(len(splits.train) / train.batch_size)
        return TrainingContext(
            train_data=lambda trial_seed, batch_size=None: batches(
                splits.train, batch_size or train.batch_size, augment=augment, shuffle=True,
                seed=trial_seed,
                repeat=train.steps_per_epoch is not None and not patch,
                steps=steps if patch else None,
                foreground=float(getattr(config.data, "foreground_oversample", 0.33)),
            ),
            val_data=lambda trial_seed, batch_size=None: batches(
                splits.val, batch_size or train.batch_size, shuffle=False),
            val_callback=val_callback,
            study_dir=self.dir,
            objective=self.objective,
            steps_per_epoch=None if patch else train.steps_per_epoch,
            mixed_precision=train.mixed_precision,
            jit_compile=self.jit_compile(),
            verbose=train.verbose,
            seed=seed,
            progress=progress,
            deadline=deadline,
            epoch_steps=epoch_steps,
            latency_batches=int(config.search.latency_batches),
            latency_batch_size=int(config.search.latency_batch_size),
            tensorboard_dir=self._tensorboard_dir(),
        )

    def _tensorboard_dir(self) -> Path | None:
        """Where the trials write their TensorBoard runs (``export.tensorboard``), or None."""
        if not getattr(self.config.export, "tensorboard", False):
            return None
        from segsearch.tensorboard_logs import ROOT

        return self.dir / ROOT


def prepare_trials(config: Any, progress: Progress | None) -> tuple[Any, Any]:
    """The hypermodel and training context a trial worker process trains with.

    The driver hands this function to the engines (:class:`segsearch.engines.base.SearchSession`),
    which pass it to the worker (:class:`segsearch.engines.worker.TrialWorker`): a module-level
    function, so that the "spawn" worker can unpickle it.

    Args:
        config: the study's Config.
        progress: where epoch events go (the worker forwards them to the driver).
    """
    shop = _worker_shop(config)
    return shop.hypermodel(), shop.training_context(progress)


_SHOP: list[Workshop] = []  # a worker's own workshop: its data loaded once for trials and export


def _worker_shop(config: Any) -> Workshop:
    """The worker process's workshop for ``config`` (made once, shared by trials and export)."""
    if not _SHOP or _SHOP[0].config != config:
        _SHOP[:] = [Workshop(config, trains_here=True)]
    return _SHOP[0]


def baseline_in_worker(config: Any) -> dict[str, Any] | None:
    """:meth:`Workshop.baseline` in the study's trial worker process (its metrics are Keras
    variables: computed in the driver, they would initialise the GPU there).

    Args:
        config: the study's Config.
    """
    return _worker_shop(config).baseline()


def export_in_worker(config: Any, model_path: Path, **kwargs: Any) -> Path:
    """:func:`segsearch.export.export_study` of a study, run in its trial worker process
    (:meth:`segsearch.engines.worker.TrialWorker.call`): loading and scoring the model there
    keeps the driver off the GPU.

    Args:
        config: the study's Config.
        model_path: the model to export.
        **kwargs: best, final, records (as export_study takes them).
    """
    from segsearch.export import export_study

    splits = _worker_shop(config).load_data()
    return export_study(Path(config.study_dir), config=config, model_path=model_path,
                        val=splits.val, **kwargs)


def validation_masks(val: Any) -> Any:
    """The validation masks (class ids), one at a time, or None when the part has none."""
    if hasattr(val, "item"):
        count = len(val.names) if getattr(val, "crop", False) else len(val)  # patch: whole images
        return (val.item(i)[1] for i in range(count))
    y = getattr(val, "y", None)
    return None if y is None else (y[i] for i in range(len(y)))


def has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if keras.backend.backend() == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


