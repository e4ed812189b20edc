"""Where a study's records live: storage URLs without passwords, storages looked at read-only.

- :func:`mask`: a storage URL with its password written ``***``, which is what ``study.json``
  stores and every message prints.
- :func:`resolve`: the URL segsearch connects with. A plain ``postgresql://`` (or ``postgres://``)
  URL names psycopg2, the driver the ``postgres`` extra installs (SQLAlchemy 2.1 alone would pick
  psycopg 3); a password written ``***`` is taken from the environment variable
  ``SEGSEARCH_STORAGE``, which then holds the same URL with the real password. A URL without a
  password leaves it to libpq (``PGPASSWORD``, ``~/.pgpass``).
- :func:`probe_optuna` and :func:`probe_keras_tuner`: what a study's storage holds, found without
  creating, migrating or writing anything (SQLite is opened with ``mode=ro``; other databases are
  only inspected).
- :func:`load_optuna_study`: an Optuna study from a storage that already holds it, opened without
  creating a schema.

Nothing here imports TensorFlow or keras-tuner; SQLAlchemy (Optuna's dependency) and Optuna are
imported when needed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segsearch.errors import StudyError

__all__ = [
    "ENV_URL",
    "MASK",
    "PG_DRIVER",
    "StorageState",
    "mask",
    "resolve",
    "sqlite_path",
    "probe_optuna",
    "probe_keras_tuner",
    "load_optuna_study",
    "connect_error",
]

#: the environment variable holding the full storage URL (password included) of a stored study.
ENV_URL = "SEGSEARCH_STORAGE"
#: how a password is written in study.json and in messages.
MASK = "***"
#: the PostgreSQL driver segsearch uses (the ``postgres`` extra installs psycopg2-binary).
PG_DRIVER = "postgresql+psycopg2"
#: seconds a probe waits for a database server (PostgreSQL's connect_timeout).
CONNECT_TIMEOUT = 10
#: seconds a probe waits for an SQLite lock held by a running study.
SQLITE_TIMEOUT = 30

Status = Literal["ok", "missing", "empty", "no_study", "unreadable", "unreachable"]


@dataclass(frozen=True)
class StorageState:
    """What a storage holds for one study.

    Args:
        status: "ok" (the study is there), "missing" (no file or folder), "empty" (a file or
            database without the engine's records), "no_study" (records, but not of this study),
            "unreadable" (corrupt or not the engine's format), "unreachable" (no connection).
        where: the file, folder or masked URL, for messages.
        detail: what was found, for messages ("the file is empty (0 bytes)").
        trials: trials the storage holds for the study (status "ok").
        local: the storage is a file or folder inside the study folder (it may be moved aside).
    """

    status: Status
    where: str
    detail: str = ""
    trials: int = 0
    local: bool = False

    @property
    def ok(self) -> bool:
        """Whether the study's records are there."""
        return self.status == "ok"


# ------------------------------------------------------------------------------------ URLs
def _url(url: str) -> Any:
    """SQLAlchemy's URL object, or a StudyError that does not show the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise StudyError(f"storage {_mask_text(url)}: not a storage URL; give one such as "
                         "sqlite:///path/study.db or postgresql://user@host/database") from None


def _mask_text(url: str) -> str:
    """Mask the password of a URL that SQLAlchemy cannot parse: the text between ``user:`` and
    ``@``."""
    return re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", rf"\g<1>{MASK}@", str(url))


def mask(url: str | None) -> str | None:
    """The URL with its password written ``***`` (None stays None).

    Args:
        url: an SQLAlchemy URL.

    Example:
        >>> mask("postgresql+psycopg2://me:secret@db/segsearch")
        'postgresql+psycopg2://me:***@db/segsearch'
    """
    if url is None:
        return None
    try:
        parsed = _url(url)
    except StudyError:
        return _mask_text(url)
    query = {k: (MASK if k.lower() in _PASSWORD_PARAMS else v) for k, v in parsed.query.items()}
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", MASK)  # the query's *** is percent-encoded


#: query parameters that carry a password (libpq reads ``?password=...``)
_PASSWORD_PARAMS = ("password", "passwd", "pwd")


def secrets(url: str | None) -> list[str]:
    """Every password a URL carries, in the user part or the query, to blot out of messages.

    Args:
        url: an SQLAlchemy URL (anything else: its ``user:password@`` part, if any).
    """
    if not url:
        return []
    try:
        parsed = _url(url)
    except StudyError:
        found = re.search(r"://[^:/@?#]*:([^@/?#]*)@", str(url))
        return [found.group(1)] if found and found.group(1) else []
    out = [str(parsed.password)] if parsed.password else []
    for key, value in parsed.query.items():
        if key.lower() in _PASSWORD_PARAMS:
            out += [value] if isinstance(value, str) else list(value)
    return [v for v in out if v and v != MASK]


def _with_driver(url: Any) -> Any:
    """Plain postgresql:// (or postgres://) names psycopg2 explicitly."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername=PG_DRIVER)
    return url


def resolve(url: str) -> str:
    """The URL to connect with: psycopg2 for plain ``postgresql://``, the password from
    ``SEGSEARCH_STORAGE`` where it is written ``***``.

    Args:
        url: the URL given with ``--storage`` or stored in ``study.json``.

    Raises:
        StudyError: the password is masked and ``SEGSEARCH_STORAGE`` is unset or names another
            storage; the URL cannot be parsed.
    """
    parsed = _with_driver(_url(url))
    if parsed.password != MASK:
        return parsed.render_as_string(hide_password=False)
    shown = parsed.render_as_string(hide_password=True)
    env = os.environ.get(ENV_URL)
    if not env:
        raise StudyError(
            f"storage {shown}: the password is not stored; set {ENV_URL} to this URL with the "
            "password, or leave the password out of the URL and give it through PGPASSWORD or "
            "~/.pgpass"
        )
    full = _with_driver(_url(env))
    if full.render_as_string(hide_password=True) != shown or full.password in (None, MASK):
        raise StudyError(
            f"storage {shown}: {ENV_URL} holds {full.render_as_string(hide_password=True)}, not "
            f"this URL with its password; set {ENV_URL} to the study's storage URL with the "
            "password"
        )
    return full.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for another database or an in-memory one).

    Args:
        url: an SQLAlchemy URL.
    """
    parsed = _url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def connect_error(url: str, error: BaseException) -> StudyError:
    """A one-line StudyError for a storage that cannot be opened (password masked).

    Args:
        url: the URL segsearch tried (it may hold the password).
        error: what SQLAlchemy, the driver or Optuna raised.
    """
    shown = mask(url) or ""
    parsed = None
    try:
        parsed = _url(url)
    except StudyError:
        pass
    if type(error).__name__ == "NoSuchModuleError":
        return StudyError(f"storage {shown}: SQLAlchemy knows no database "
                          f"{parsed.drivername if parsed is not None else ''!r}; give a URL "
                          f"such as sqlite:///path/study.db or {PG_DRIVER}://user@host/database")
    if isinstance(error, ImportError):
        driver = parsed.drivername if parsed is not None else "its"
        fix = ("pip install 'segsearch[postgres]' (psycopg2-binary), or write the URL as "
               f"{PG_DRIVER}://..." if driver.startswith("postgres") else
               "install the database driver SQLAlchemy names for it")
        return StudyError(f"storage {shown}: the {driver} driver is not installed "
                          f"({_reason(error, parsed)}); {fix}")
    return StudyError(
        f"storage {shown}: cannot connect ({_reason(error, parsed)}); check that the server is "
        f"running and reachable, the URL, and the password ({ENV_URL}, PGPASSWORD or ~/.pgpass)"
    )


def _reason(error: BaseException, parsed: Any) -> str:
    """The first line of the driver's message, without the password."""
    inner = getattr(error, "orig", None) or error
    text = " ".join(str(inner).split()) or type(inner).__name__
    text = text.split(" (Background on this error")[0].split(" [SQL:")[0]
    password = getattr(parsed, "password", None)
    if password:
        text = text.replace(str(password), MASK)
    return text[:200]


# ------------------------------------------------------------------------------------ probes
def probe_optuna(url: str, study_name: str, *, study_dir: Path | None = None) -> StorageState:
    """What an Optuna storage holds for ``study_name``, found without writing anything.

    Args:
        url: the resolved storage URL (see :func:`resolve`).
        study_name: the study's name.
        study_dir: the study folder (an SQLite file inside it is "local").
    """
    path = sqlite_path(url)
    if path is not None:
        return _probe_sqlite(path, study_name, study_dir)
    return _probe_rdb(url, study_name)


def _probe_sqlite(path: Path, study_name: str, study_dir: Path | None) -> StorageState:
    local = study_dir is not None and path.resolve().parent == Path(study_dir).resolve()
    where = str(path)
    if not path.exists():
        return StorageState("missing", where, "the file is missing", local=local)
    if not path.is_file():
        return StorageState("unreadable", where, "not a file", local=local)
    if path.stat().st_size == 0:
        return StorageState("empty", where, "the file is empty (0 bytes)", local=local)
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT)
    except sqlite3.Error as e:
        return StorageState("unreadable", where, f"cannot open it: {e}", local=local)
    try:
        tables = {row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"studies", "trials"} <= tables:
            return StorageState("empty", where, "it holds no Optuna study tables", local=local)
        check = con.execute("PRAGMA quick_check(1)").fetchone()
        if check is None or check[0] != "ok":
            return StorageState("unreadable", where, "not a readable SQLite database ("
                                f"{check[0] if check else 'no answer to a check'})", local=local)
        row = con.execute("SELECT study_id FROM studies WHERE study_name = ?",
                          (study_name,)).fetchone()
        if row is None:
            return StorageState("no_study", where, f"it holds no study named {study_name!r}",
                                local=local)
        count = con.execute("SELECT COUNT(*) FROM trials WHERE study_id = ?",
                            (row[0],)).fetchone()[0]
    except sqlite3.Error as e:
        return StorageState("unreadable", where, f"not a readable SQLite database ({e})",
                            local=local)
    finally:
        con.close()
    return StorageState("ok", where, trials=int(count), local=local)


def _probe_rdb(url: str, study_name: str) -> StorageState:
    import sqlalchemy

    shown = mask(url) or ""
    parsed = _url(url)
    connect_args = {"connect_timeout": CONNECT_TIMEOUT} if parsed.drivername.startswith(
        "postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    except Exception as e:  # noqa: BLE001 - a missing driver, an unknown dialect
        raise connect_error(url, e) from None
    try:
        try:
            with engine.connect() as con:
                tables = set(sqlalchemy.inspect(con).get_table_names())
                if not {"studies", "trials"} <= tables:
                    return StorageState("empty", shown, "the database holds no Optuna tables")
                row = con.execute(sqlalchemy.text(
                    "SELECT study_id FROM studies WHERE study_name = :name"),
                    {"name": study_name}).fetchone()
                if row is None:
                    return StorageState("no_study", shown,
                                        f"the database holds no study named {study_name!r}")
                count = con.execute(sqlalchemy.text(
                    "SELECT COUNT(*) FROM trials WHERE study_id = :id"), {"id": row[0]}).scalar()
        except sqlalchemy.exc.OperationalError as e:
            return StorageState("unreachable", shown, _reason(e, parsed))
        except Exception as e:  # noqa: BLE001 - a driver's own error type
            if isinstance(e, ImportError):
                raise connect_error(url, e) from None
            return StorageState("unreadable", shown, _reason(e, parsed))
    finally:
        engine.dispose()
    return StorageState("ok", shown, trials=int(count or 0))


#: the keras-tuner project folder inside the study folder.
KT_PROJECT_DIR = "keras_tuner"
#: the files of a keras-tuner project that must be there for it to reload.
KT_TUNER_FILE = "tuner0.json"
KT_ORACLE_FILE = "oracle.json"


def probe_keras_tuner(project: Path) -> StorageState:
    """What a keras-tuner project folder holds, found without writing anything.

    Args:
        project: the project folder (``<study>/keras_tuner``).
    """
    where = str(project)
    if not project.exists():
        return StorageState("missing", where, "the folder is missing", local=True)
    tuner, oracle = project / KT_TUNER_FILE, project / KT_ORACLE_FILE
    if not tuner.is_file() or not oracle.is_file():
        missing = " and ".join(p.name for p in (tuner, oracle) if not p.is_file())
        return StorageState("empty", where, f"{missing} is missing", local=True)
    for path in (tuner, oracle):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            detail = "is empty" if path.stat().st_size == 0 else f"is unreadable ({e})"
            return StorageState("unreadable", where, f"{path.name} {detail}", local=True)
        if not isinstance(data, dict):
            return StorageState("unreadable", where, f"{path.name} is not a keras-tuner state",
                                local=True)
    trials = len(list(project.glob("trial_*/trial.json")))
    return StorageState("ok", where, trials=trials, local=True)


# ------------------------------------------------------------------------------------ opening
def load_optuna_study(url: str, study_name: str) -> Any:
    """Load an Optuna study that the storage holds (check with :func:`probe_optuna` first),
    without creating or migrating a schema: SQLite is opened read-only.

    Args:
        url: the resolved storage URL.
        study_name: the study's name.
    """
    import optuna

    path = sqlite_path(url)
    try:
        if path is not None:
            uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
            storage: Any = optuna.storages.RDBStorage(
                f"sqlite:///{path.resolve()}",
                engine_kwargs={"creator": lambda: sqlite3.connect(
                    uri, uri=True, timeout=SQLITE_TIMEOUT, check_same_thread=False)},
            )
        else:
            storage = optuna.storages.RDBStorage(url)
        return optuna.load_study(study_name=study_name, storage=storage)
    except StudyError:
        raise
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors
        raise connect_error(url, e) from None


def study_url(study_dir: str | os.PathLike[str], storage: str | None = None) -> str:
    """The Optuna storage URL of a study: ``storage`` as given (resolved, see :func:`resolve`), or
    SQLite in the study folder (``study.db``).

    Args:
        study_dir: the study folder.
        storage: the resolved ``--storage`` URL, if any.
    """
    return storage or f"sqlite:///{(Path(study_dir) / 'study.db').resolve()}"
