"""The README's example of a segsearch hypermodel inside a hand-written Optuna objective runs.

The code is taken from README.md (the python block that uses ``OptunaHyperParameters(trial)``) when
the README holds it, else from the copy below, which is the same text.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

EXAMPLE = '''
import numpy as np
import optuna
from segsearch import hypermodels
from segsearch.engines.hp import OptunaHyperParameters, seed_values

rng = np.random.default_rng(0)
x = rng.random((12, 32, 32, 1)).astype("float32")
y = (x > 0.5).astype("float32")                       # class ids, (N, H, W, 1)

hypermodel = hypermodels.get("unet", (32, 32, 1), num_classes=1,
                             space={"filters": [4, 8], "depth": {"max": 2}})

def objective(trial):
    model = hypermodel.build(OptunaHyperParameters(trial))
    history = model.fit(x[:9], y[:9], validation_data=(x[9:], y[9:]),
                        epochs=2, batch_size=3, verbose=0)
    return max(history.history["val_dice"])

study = optuna.create_study(direction="maximize")
study.enqueue_trial(seed_values(hypermodel))          # the seed network first
study.optimize(objective, n_trials=2)
print(study.best_params)
'''


def _example() -> str:
    if README.is_file():
        for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
            if "OptunaHyperParameters(trial)" in block:
                return block
    return EXAMPLE


def test_optuna_objective_example_runs(capsys):
    namespace: dict = {}
    exec(compile(_example(), "README.md example", "exec"), namespace)  # noqa: S102
    study = namespace["study"]
    assert len(study.trials) == 2
    assert study.trials[0].params == namespace["seed_values"](namespace["hypermodel"])
    assert "filters" in capsys.readouterr().out
