"""The ``postgres_url`` fixture gives a real PostgreSQL that two processes can share one Optuna
study on."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid

TRIALS_PER_WORKER = 4
WORKERS = 2


def _objective(trial, worker: int) -> float:
    trial.set_user_attr("worker", worker)
    x = trial.suggest_float("x", -10.0, 10.0)
    return (x - 2.0) ** 2


def _worker(url: str, study_name: str, worker: int, barrier, trials: int) -> None:
    """Spawned process: wait for the other worker, then run `trials` trials on the shared study."""
    import functools

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name, storage=url, sampler=optuna.samplers.RandomSampler(seed=worker)
    )
    barrier.wait(timeout=60)  # both processes hit the storage at the same time
    study.optimize(functools.partial(_objective, worker=worker), n_trials=trials)


def test_postgres_fixture_shares_one_study_between_two_processes(postgres_url):
    import optuna
    import sqlalchemy

    own_server = not os.environ.get("SEGSEARCH_TEST_POSTGRES_URL")
    if own_server:
        assert postgres_url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")
    name = f"fixture-{uuid.uuid4().hex[:8]}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=postgres_url, study_name=name)

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=_worker, args=(postgres_url, name, w, barrier, TRIALS_PER_WORKER))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    assert [proc.exitcode for proc in procs] == [0] * WORKERS

    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert len(trials) == WORKERS * TRIALS_PER_WORKER
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS_PER_WORKER))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    workers = sorted(t.user_attrs["worker"] for t in trials)
    assert workers == sorted(list(range(WORKERS)) * TRIALS_PER_WORKER)  # each ran its own share
    assert study.best_value == min(t.value for t in trials)

    # It really is PostgreSQL, listening on the loopback address.
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select version()")).scalar().startswith(
                "PostgreSQL"
            )
            if own_server:
                assert (
                    conn.execute(sqlalchemy.text("show listen_addresses")).scalar() == "127.0.0.1"
                )
    finally:
        engine.dispose()
