"""The accelerators, seen without initialising them, and how much of one a trial worker may hold.

The driver of a search never initialises a GPU: it trains nothing (the trials, the final training
and the export run in worker processes, ``train.isolation: process``), and where it needs to know
the GPUs it reads ``CUDA_VISIBLE_DEVICES`` and asks ``nvidia-smi`` (:func:`visible_gpus`), never
TensorFlow, JAX or PyTorch. Each worker process is given, before it imports a backend, the
environment of its slot (:func:`worker_environment`):

- ``CUDA_VISIBLE_DEVICES``: its GPU (``--gpus``), when it is pinned;
- JAX: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX would otherwise take 75% of the GPU in every
  process) and, when several workers share a GPU (``search.workers_per_gpu``),
  ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = its share: a cap, memory is still taken as needed;
- TensorFlow: ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (memory as needed), and, after the import,
  :func:`configure_backend_memory` turns on memory growth, or with a share caps the GPU at it
  (a logical device with a memory limit, where ``nvidia-smi`` tells the GPU's total memory);
- PyTorch: its caching allocator as it is (it takes memory as needed), with a share
  ``torch.cuda.set_per_process_memory_fraction``.

Variables the user set are left alone. :func:`quiet_accelerators` sets the same defaults in the
driver's own environment, a safety net for whatever imports a backend there (``segsearch
predict`` and ``export`` do train nothing but run models).

This module imports no backend at import time.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import sys
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GpuInfo", "Slot", "visible_gpus", "system_has_gpu", "plan_slots", "memory_share",
           "worker_environment", "quiet_accelerators", "configure_backend_memory",
           "backend_devices", "backends_imported", "SHARED_MEMORY", "BACKENDS", "ENV_NAMES"]

#: the part of a GPU the workers that share it divide among themselves; the rest is left for each
#: process's CUDA context and the allocators' own overhead.
SHARED_MEMORY = 0.9
#: the backend modules whose import must come after a worker's environment is set.
BACKENDS = ("tensorflow", "jax", "torch")
#: the environment variables that decide a worker's devices and memory (its ``ready`` message
#: reports their values; ``PYTORCH_CUDA_ALLOC_CONF`` is the user's, never set here).
ENV_NAMES = ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
             "XLA_PYTHON_CLIENT_MEM_FRACTION", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_XLA_FLAGS",
             "PYTORCH_CUDA_ALLOC_CONF")
#: seconds ``nvidia-smi`` may take before the GPUs count as unknown.
NVIDIA_SMI_TIMEOUT = 20.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` lists it.

    Args:
        index: its index (what ``CUDA_VISIBLE_DEVICES`` takes).
        memory_mib: its total memory in MiB.
        name: the product name.
    """

    index: str
    memory_mib: int | None = None
    name: str = ""


@dataclass(frozen=True)
class Slot:
    """Where one trial worker runs.

    Args:
        gpu: its ``CUDA_VISIBLE_DEVICES`` (None: inherited, not pinned).
        sharing: how many workers share that GPU (1: it has it alone).
        memory_mib: the GPU's total memory when known (for TensorFlow's limit).
    """

    gpu: str | None = None
    sharing: int = 1
    memory_mib: int | None = None

    @property
    def share(self) -> float | None:
        """The part of its GPU this worker may hold (None: alone on it, no cap)."""
        return memory_share(self.sharing)


def memory_share(sharing: int) -> float | None:
    """The memory fraction of each of ``sharing`` workers on one GPU: :data:`SHARED_MEMORY` /
    ``sharing`` (None for a worker alone on its GPU).

    Args:
        sharing: workers on the GPU.
    """
    if sharing <= 1:
        return None
    return round(SHARED_MEMORY / sharing, 3)


@functools.lru_cache(maxsize=1)
def _nvidia_smi() -> tuple[GpuInfo, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=index,memory.total,name",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=NVIDIA_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    gpus = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        memory = int(parts[1]) if parts[1].isdigit() else None
        gpus.append(GpuInfo(parts[0], memory, parts[2] if len(parts) > 2 else ""))
    return tuple(gpus)


def visible_gpus(environ: MutableMapping[str, str] | None = None) -> list[GpuInfo]:
    """The GPUs this process may use, from ``nvidia-smi`` and ``CUDA_VISIBLE_DEVICES``, without
    initialising any backend (an empty list on a machine without NVIDIA GPUs).

    Args:
        environ: the environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    listed = _nvidia_smi()
    wanted = env.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return list(listed)
    ids = [part.strip() for part in wanted.split(",") if part.strip()]
    if not ids or ids[0].startswith("-"):
        return []  # "" or "-1": no GPU
    by_index = {g.index: g for g in listed}
    # ids CUDA cannot match (UUIDs, or no nvidia-smi) are kept, their memory unknown
    return [by_index.get(i, GpuInfo(i)) for i in ids] if listed else []


def system_has_gpu() -> bool:
    """Whether this process may use a GPU, asked without initialising a backend."""
    return bool(visible_gpus())


def plan_slots(workers: int | None, gpus: str | Sequence[str] | None,
               workers_per_gpu: int | None, *,
               found: Sequence[GpuInfo] | None = None) -> list[Slot]:
    """The worker slots of a search: which GPU each worker is pinned to and how many share it.

    The rule: with GPU ids (``search.gpus``), ``workers = len(gpus) * workers_per_gpu`` unless
    ``workers`` is given, and the workers go to the GPUs in turn (slot ``i`` on
    ``gpus[i % len(gpus)]``). Without ids, ``workers_per_gpu`` applies to the GPUs found
    (``found``: :func:`visible_gpus`); with none found, ``workers_per_gpu`` (or ``workers``)
    workers run unpinned.

    Args:
        workers: ``search.workers`` (None: from the rule).
        gpus: ``search.gpus``: "0,1" or ["0", "1"] (None: not given).
        workers_per_gpu: ``search.workers_per_gpu`` (None: not given).
        found: the GPUs found, when ``gpus`` is None (ids, total memory).
    """
    if isinstance(gpus, str):
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
    else:
        ids = [str(g).strip() for g in gpus or ()]
    memory = {g.index: g.memory_mib for g in found or ()}
    if not ids and workers_per_gpu is not None:
        ids = [g.index for g in found or ()]
    if not ids:
        count = workers if workers is not None else (workers_per_gpu or 1)
        return [Slot(None, workers_per_gpu or 1) for _ in range(count)]
    count = workers if workers is not None else len(ids) * (workers_per_gpu or 1)
    pinned = [ids[i % len(ids)] for i in range(count)]
    return [Slot(gpu, pinned.count(gpu), memory.get(gpu)) for gpu in pinned]


def worker_environment(slot: Slot, environ: MutableMapping[str, str] | None = None, *,
                       study_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The environment variables a worker sets before it imports a backend (see the module).

    Variables already in ``environ`` stay as the user set them, but for
    ``CUDA_VISIBLE_DEVICES`` of a pinned worker.

    Args:
        slot: the worker's slot.
        environ: the environment it starts from (default ``os.environ``).
        study_dir: the study folder: TensorFlow's XLA keeps its compiled networks in
            ``<study>/cache/tf_xla`` (``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory``; it
            compiles with XLA where ``train.jit_compile`` is on, by default on a GPU only).
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    flags = env.get("TF_XLA_FLAGS", "")
    if study_dir is not None and "tf_xla_persistent_cache_directory" not in flags:
        folder = os.path.abspath(os.path.join(os.fspath(study_dir), "cache", "tf_xla"))
        if not any(c.isspace() for c in folder):  # TF_XLA_FLAGS splits at white space
            out["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
    if slot.gpu is not None:
        out["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
    defaults = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    share = slot.share
    if share is not None:
        defaults["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{share:.3f}"
    for name, value in defaults.items():
        if name not in env:
            out[name] = value
    return out


def quiet_accelerators(environ: MutableMapping[str, str] | None = None) -> None:
    """In the driver, before any backend import: JAX takes no memory ahead and TensorFlow grows
    its memory as needed, should anything here initialise a GPU (user settings are kept).

    Args:
        environ: the environment to change (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


def backends_imported() -> list[str]:
    """The backend modules this process has imported (see :data:`BACKENDS`)."""
    return [name for name in BACKENDS if name in sys.modules]


def backend_devices() -> list[str]:
    """The accelerators the Keras backend sees (initialises it: for a worker, never the driver)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform != "cpu"]
        if backend == "torch":
            import torch

            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken GPU stack: the trials say what fails
        return []
    return []


def configure_backend_memory(slot: Slot) -> dict[str, Any]:
    """In a worker, after its backend's import and before its first model: the backend's memory
    settings for the slot (see the module). Returns what it did, for the ``ready`` message.

    Args:
        slot: the worker's slot.
    """
    import keras

    backend = keras.backend.backend()
    done: dict[str, Any] = {"backend": backend, "memory_growth": [], "memory_limit_mib": None}
    share = slot.share
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            gpus = tf.config.list_physical_devices("GPU")
            if share is not None and slot.memory_mib and len(gpus) == 1:
                limit = int(math.floor(slot.memory_mib * share))
                tf.config.set_logical_device_configuration(
                    gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
                done["memory_limit_mib"] = limit
            else:
                for gpu in gpus:
                    tf.config.experimental.set_memory_growth(gpu, True)
                    done["memory_growth"].append(gpu.name)
        except (RuntimeError, ValueError):  # already initialised: its settings stay
            pass
    elif backend == "torch" and share is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(share)
            done["memory_fraction"] = share
    elif backend == "jax":
        done["xla_preallocate"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
        done["xla_mem_fraction"] = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION")
    return done
