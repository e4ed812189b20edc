"""segsearch/callbacks.py: what a callback that raised leaves in the study folder."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from segsearch.callbacks import ERROR_FILE, PREVIOUS_ERROR_FILE, NamedCallback, call_all
from segsearch.errors import StudyError


def test_the_error_file_is_retired_once_the_callbacks_run_cleanly_again(tmp_path) -> None:
    broken = {"yes": True}

    def record(study, trial):
        if broken["yes"]:
            raise RuntimeError("the tracking server is down")

    callbacks = [NamedCallback("mine:record", record)]
    trial = SimpleNamespace(number=3, state=SimpleNamespace(name="COMPLETE"))
    with pytest.raises(StudyError, match="callback 'mine:record' raised RuntimeError"):
        call_all(callbacks, None, trial, tmp_path)
    assert "the tracking server is down" in (tmp_path / ERROR_FILE).read_text()
    broken["yes"] = False  # fixed; the resumed study calls it again
    call_all(callbacks, None, SimpleNamespace(number=4, state=trial.state), tmp_path)
    assert not (tmp_path / ERROR_FILE).exists()
    assert "after trial 3" in (tmp_path / PREVIOUS_ERROR_FILE).read_text()
    call_all([], None, trial, tmp_path)  # nothing to call: nothing changes
    assert (tmp_path / PREVIOUS_ERROR_FILE).is_file()
