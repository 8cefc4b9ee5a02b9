"""jobs/airflow/ loaded by Airflow's own DagBag: no import errors, the two DAGs, their schedules,
the exit-code semantics, and the backfill's mapped task expanding to one task per shard.

Not collected by `scripts/check` (pyproject's testpaths are tests/unit and tests/integration):
Airflow is not a dependency of the archiver or of its tests. It runs in its own environment; the
setup is in jobs/README.md ("Checking the Airflow DAGs"):

    AIRFLOW_HOME=$(mktemp -d) .venv-airflow/bin/python -m pytest --noconftest -p no:cacheprovider \\
        -c /dev/null tests/optional/test_airflow_dag.py

(With `kubernetes-validate` in that environment too, for the rendered pod's check.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DagBag = pytest.importorskip("airflow.models.dagbag").DagBag
kubernetes_validate = pytest.importorskip("kubernetes_validate")

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


# A kube config that names a cluster nobody serves: the operator reads one to label the pod
# (in cluster or not) but renders the pod without contacting the cluster.
_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {token: none}}]
"""


def test_the_sync_pod_airflow_would_create_is_a_valid_kubernetes_pod(
    bag: DagBag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.client import ApiClient

    config = tmp_path / "kubeconfig"
    config.write_text(_KUBECONFIG)
    task = bag.dags["ultravox_archiver_sync"].get_task("sync")
    # The kubernetes client reads $KUBECONFIG when imported, already done: name the file instead.
    monkeypatch.setattr(task, "config_file", str(config))
    pod: dict[str, Any] = ApiClient().sanitize_for_serialization(task.build_pod_request_obj())
    kubernetes_validate.validate(pod, "1.30", strict=True)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert volumes[mounts["/var/run/secrets/ultravox"]]["secret"]["secretName"] == "ultravox-api-key"
    assert container["args"][0] == "sync" and not container.get("command")
