"""segsearch.engines.storage: masked URLs, the PostgreSQL driver, passwords from the environment,
and storages looked at without writing (issue 12). No TensorFlow here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import tomllib

from segsearch.engines import storage
from segsearch.errors import StudyError

ROOT = Path(__file__).resolve().parents[2]


def test_mask_hides_the_password_and_nothing_else():
    assert storage.mask("postgresql+psycopg2://me:s3cret@db:5432/x?sslmode=require") == \
        "postgresql+psycopg2://me:***@db:5432/x?sslmode=require"
    assert storage.mask("postgresql://me@db/x") == "postgresql://me@db/x"
    assert storage.mask("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"
    assert storage.mask(None) is None
    # a URL SQLAlchemy cannot read is still masked
    assert "s3cret" not in storage.mask("not a url://me:s3cret@db/x")


def test_a_password_in_the_query_string_is_masked_too():
    url = "postgresql://me@db:5432/segsearch?password=qsecretpw&sslmode=require"
    shown = storage.mask(url)
    assert "qsecretpw" not in shown and "password=***" in shown and "sslmode=require" in shown
    assert storage.secrets(url) == ["qsecretpw"]
    assert storage.secrets("postgresql://me:s3cret@db/x?passwd=two") == ["s3cret", "two"]
    assert storage.secrets("sqlite:///study.db") == []


def test_the_cli_blots_out_every_password_of_the_storage_url(monkeypatch):
    import argparse

    from segsearch.cli import _without_passwords

    args = argparse.Namespace(storage="postgresql://me@db/x?password=qsecretpw")
    monkeypatch.delenv("SEGSEARCH_STORAGE", raising=False)
    text = _without_passwords("could not connect to db/x?password=qsecretpw (qsecretpw)", args)
    assert "qsecretpw" not in text


def test_plain_postgresql_urls_use_psycopg2(monkeypatch):
    monkeypatch.delenv(storage.ENV_URL, raising=False)
    assert storage.resolve("postgresql://me:pw@db/x") == "postgresql+psycopg2://me:pw@db/x"
    assert storage.resolve("postgres://me@db/x") == "postgresql+psycopg2://me@db/x"
    assert storage.resolve("postgresql+psycopg2://me@db/x") == "postgresql+psycopg2://me@db/x"
    assert storage.resolve("sqlite:///x.db") == "sqlite:///x.db"
    # the postgres extra (and the test extra) installs that driver
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(d.startswith("psycopg2-binary") for d in extras["postgres"])
    assert any(d.startswith("psycopg2-binary") for d in extras["test"])


def test_a_masked_password_comes_from_segsearch_storage(monkeypatch):
    masked = "postgresql+psycopg2://me:***@db:5432/x"
    monkeypatch.delenv(storage.ENV_URL, raising=False)
    with pytest.raises(StudyError, match="the password is not stored; set SEGSEARCH_STORAGE"):
        storage.resolve(masked)
    monkeypatch.setenv(storage.ENV_URL, "postgresql://me:pw@db:5432/x")
    assert storage.resolve(masked) == "postgresql+psycopg2://me:pw@db:5432/x"
    monkeypatch.setenv(storage.ENV_URL, "postgresql://me:pw@other:5432/x")
    with pytest.raises(StudyError, match="holds postgresql\\+psycopg2://me:\\*\\*\\*@other") as e:
        storage.resolve(masked)
    assert "pw" not in str(e.value).replace("password", "")


def _optuna_db(path: Path, name: str = "s", trials: int = 2) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=trials)


def test_probe_sqlite_never_writes(tmp_path):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    state = storage.probe_optuna(url, "s", study_dir=tmp_path)
    assert (state.status, state.local) == ("missing", True) and not db.exists()
    db.write_bytes(b"")
    assert storage.probe_optuna(url, "s").status == "empty" and db.stat().st_size == 0
    db.write_bytes(b"not a database at all" * 100)
    state = storage.probe_optuna(url, "s")
    assert state.status == "unreadable" and "not a readable SQLite database" in state.detail
    db.unlink()
    sqlite3.connect(db).execute("CREATE TABLE other (x)").connection.commit()
    assert storage.probe_optuna(url, "s").status == "empty"
    db.unlink()
    _optuna_db(db, "s", trials=2)
    before = (db.stat().st_size, db.stat().st_mtime_ns)
    assert storage.probe_optuna(url, "other").status == "no_study"
    state = storage.probe_optuna(url, "s")
    assert (state.status, state.trials) == ("ok", 2)
    study = storage.load_optuna_study(url, "s")
    assert len(study.trials) == 2
    assert (db.stat().st_size, db.stat().st_mtime_ns) == before
    # a file cut short (a malformed database) is unreadable, not a traceback
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    assert storage.probe_optuna(url, "s").status == "unreadable"


def test_load_optuna_study_is_read_only(tmp_path):
    db = tmp_path / "study.db"
    _optuna_db(db)
    study = storage.load_optuna_study(f"sqlite:///{db}", "s")
    with pytest.raises(Exception):  # noqa: B017 - whichever error the read-only file gives
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert storage.probe_optuna(f"sqlite:///{db}", "s").trials == 2


def test_probe_keras_tuner(tmp_path):
    project = tmp_path / "keras_tuner"
    assert storage.probe_keras_tuner(project).status == "missing"
    project.mkdir()
    (project / "oracle.json").write_text("{}")
    assert storage.probe_keras_tuner(project).status == "empty"
    (project / "tuner0.json").write_text("")
    assert storage.probe_keras_tuner(project).status == "unreadable"
    (project / "tuner0.json").write_text("{}")
    (project / "trial_0").mkdir()
    (project / "trial_0" / "trial.json").write_text("{}")
    state = storage.probe_keras_tuner(project)
    assert (state.status, state.trials) == ("ok", 1)


def test_unreachable_server_and_missing_driver_are_one_line_without_password(monkeypatch):
    url = "postgresql+psycopg2://me:s3cret@127.0.0.1:1/x"
    state = storage.probe_optuna(url, "s")
    assert state.status == "unreachable" and state.where == \
        "postgresql+psycopg2://me:***@127.0.0.1:1/x"
    error = storage.connect_error(url, RuntimeError(state.detail))
    assert "cannot connect" in str(error) and "s3cret" not in str(error)
    monkeypatch.setitem(__import__("sys").modules, "psycopg2", None)  # as if not installed
    with pytest.raises(StudyError, match="driver is not installed.*segsearch\\[postgres\\]") as e:
        storage.probe_optuna("postgresql://me:s3cret@127.0.0.1:1/x", "s")
    assert "s3cret" not in str(e.value)
    with pytest.raises(StudyError, match="knows no database") as e:
        storage.probe_optuna("nosuchdb://me:s3cret@127.0.0.1:1/x", "s")
    assert "s3cret" not in str(e.value) and "\n" not in str(e.value)
