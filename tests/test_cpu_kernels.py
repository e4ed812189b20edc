"""Importing segsearch caps TensorFlow's oneDNN CPU kernels at AVX2 (see segsearch/__init__.py).

Without the cap, on CPUs where TensorFlow 2.21's AVX-512 kernels are broken, training a 1x1
convolution of stride 2 (ResUNet's and ResNet50's shortcuts) corrupts the heap as soon as the batch
size changes. Each check runs in a child process, so that such a crash fails one test, not the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env={**environ, **env})


def test_strided_shortcuts_train_with_changing_batch_sizes():
    done = _python("""
        import keras, numpy as np
        import segsearch
        from segsearch.blocks import preact_residual_block

        inputs = keras.Input((32, 32, 1))
        x = preact_residual_block(inputs, 4, strides=2, name="enc", preactivate=False)
        x = keras.layers.UpSampling2D(2)(x)
        model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
        model.compile("adam", "binary_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.random((8, 32, 32, 1), dtype="float32")
        y = (rng.random((8, 32, 32, 1)) > 0.5).astype("float32")
        for batch in (8, 5, 3, 8, 5, 3):
            model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
        print("trained")
    """)
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]


def test_the_cap_is_a_default_the_user_can_change():
    code = "import os, segsearch; print(os.environ['ONEDNN_MAX_CPU_ISA'])"
    assert _python(code).stdout.strip() == "AVX2"
    assert _python(code, ONEDNN_MAX_CPU_ISA="DEFAULT").stdout.strip() == "DEFAULT"
