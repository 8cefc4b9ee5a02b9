"""jobs/airflow/ loaded by Airflow's own DagBag: no import errors, the two DAGs, their schedules,
the exit-code semantics, and the backfill's mapped task expanding to one task per shard.

Not collected by `scripts/check` (pyproject's testpaths are tests/unit and tests/integration):
Airflow is not a dependency of the archiver or of its tests. It runs in its own environment; the
setup is in jobs/README.md ("Checking the Airflow DAGs"):

    AIRFLOW_HOME=$(mktemp -d) /work/airflow-venv/bin/python -m pytest --noconftest -p no:cacheprovider \\
        -c /dev/null tests/optional/test_airflow_dag.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

DagBag = pytest.importorskip("airflow.models.dagbag").DagBag

DAGS = Path(__file__).resolve().parents[2] / "jobs" / "airflow"
IMAGE_PREFIX = "ghcr.io/ultravox-archiver/ultravox-archiver:"


@pytest.fixture(scope="module")
def bag() -> DagBag:
    return DagBag(dag_folder=str(DAGS), include_examples=False)


def test_the_dags_load_without_import_errors(bag: DagBag) -> None:
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"ultravox_archiver_sync", "ultravox_archiver_backfill"}


def test_sync_runs_hourly_in_the_image_and_skips_on_exit_4(bag: DagBag) -> None:
    dag = bag.dags["ultravox_archiver_sync"]  # parsed; get_dag would read the metadata DB
    assert dag.timetable.summary == "15 * * * *"
    assert dag.catchup is False and dag.max_active_runs == 1
    task = dag.get_task("sync")
    assert type(task).__name__ == "KubernetesPodOperator"
    assert task.image.startswith(IMAGE_PREFIX)
    assert task.arguments[0] == "sync"
    assert task.skip_on_exit_code == [4] or task.skip_on_exit_code == 4
    assert task.retries == 2


def test_the_backfill_maps_one_task_per_shard(bag: DagBag) -> None:
    dag = bag.dags["ultravox_archiver_backfill"]  # parsed; get_dag would read the metadata DB
    assert dag.timetable.summary in ("None", "Never")  # triggered by hand
    task = dag.get_task("backfill")
    assert type(task).__name__ == "MappedOperator"
    shards = task.expand_input.value["arguments"]
    count = len(shards)
    assert count > 1 and task.get_parse_time_mapped_ti_count() == count
    assert [argv[argv.index("--shard") + 1] for argv in shards] == [f"{i}/{count}" for i in range(count)]
    assert task.partial_kwargs["image"].startswith(IMAGE_PREFIX)
    assert task.partial_kwargs["skip_on_exit_code"] == 4
    assert task.partial_kwargs["retries"] == 2
