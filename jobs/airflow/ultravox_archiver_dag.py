"""Ultravox archiving as two Airflow DAGs (Airflow 2.6+ or 3, with the cncf.kubernetes provider).

- `ultravox_archiver_sync`: `ultravox-archiver sync` every hour.
- `ultravox_archiver_backfill`: a long window split over SHARDS workers, one mapped task per shard
  (`backfill --shard I/N`), triggered by hand.

Each task runs the archiver's image by tag in a pod of its own (KubernetesPodOperator): the Airflow
workers install nothing, the archiver's dependencies never meet Airflow's, and the pod gets the
archiver's own service account (S3 access) and Secret (the key) rather than the worker's. The tag
is the package's version; tests/unit/test_jobs.py keeps every job file on it.

The archiver keeps its state in the destination, so `sync` has no parameters: the first run starts
at ARCHIVER_SINCE, each later one archives whatever is new or still open since the last one, and
`catchup` stays off (a sync is not tied to its data interval).

Exit codes map to task states: 0 success; 4 (another run holds some partitions; the next run takes
them) is a skip, not a failure; 1 (partial: some calls failed and a re-run retries them) fails the
try and Airflow's retries re-run it (for a backfill, only the shard that failed); 2 (configuration)
and 3 (fatal: key rejected, destination unusable) fail too and want a person.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

IMAGE = "ghcr.io/ultravox-archiver/ultravox-archiver:0.1.0"
NAMESPACE = "ultravox-archiver"
# The image's entry point is `ultravox-archiver`: these are its arguments.
SYNC = ["sync", "--log-format", "json", "--summary-format", "json"]
# One --worker-id for every shard: the archiver adds the shard to it (...#shard-3-of-8), so a shard
# retried after a kill takes its predecessor's leases over at once.
BACKFILL = [
    "backfill",
    "--since",
    "2025-01-01",
    "--until",
    "2025-12-31",
    "--worker-id",
    "ultravox-archiver-backfill",
    "--lock-wait",
    "75",
    "--log-format",
    "json",
    "--summary-format",
    "json",
]
SHARDS = 8  # choosing N and sharing the API's rate limit: "Operating at scale" in the README
# The key from a Secret mounted as a file, never an Airflow Variable printed into rendered templates.
# S3 access comes from the pod's service account (IRSA / workload identity), never from here.
ENV = {
    "ULTRAVOX_API_KEY_FILE": "/var/run/secrets/ultravox/api-key",
    "ARCHIVE_DEST": "s3://my-bucket/ultravox",
    "AWS_REGION": "us-east-1",
    # Where the first sync into an empty destination starts; later runs continue from the archive's
    # own state.
    "ARCHIVER_SINCE": "2025-01-01",
}

# What every archiver pod shares with the Kubernetes manifests in jobs/kubernetes/: the image's
# non-root user, a read-only root file system with the spool on an emptyDir /tmp, and resources
# from the benchmark's peak RSS (172-236 MiB, README, Performance).
POD = {
    "namespace": NAMESPACE,
    "image": IMAGE,
    "service_account_name": "ultravox-archiver",
    "env_vars": ENV,
    "secrets": [Secret("volume", "/var/run/secrets/ultravox", "ultravox-api-key", "api-key")],
    "volumes": [
        k8s.V1Volume(name="spool", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="4Gi")),
    ],
    "volume_mounts": [k8s.V1VolumeMount(name="spool", mount_path="/tmp")],
    "security_context": k8s.V1PodSecurityContext(
        run_as_non_root=True, run_as_user=10001, run_as_group=10001, fs_group=10001
    ),
    "container_security_context": k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
    ),
    "container_resources": k8s.V1ResourceRequirements(
        requests={"cpu": "500m", "memory": "320Mi"}, limits={"memory": "512Mi"}
    ),
    "get_logs": True,
    "on_finish_action": "delete_pod",
    "skip_on_exit_code": 4,
}

with DAG(
    dag_id="ultravox_archiver_sync",
    schedule="15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # overlapping runs are safe (leases) but pointless
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["ultravox", "archive"],
):
    KubernetesPodOperator(
        task_id="sync",
        name="ultravox-archiver-sync",
        arguments=SYNC,
        execution_timeout=timedelta(minutes=55),
        **POD,
    )

with DAG(
    dag_id="ultravox_archiver_backfill",
    schedule=None,  # a one-off: trigger it by hand for the window in BACKFILL
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["ultravox", "archive"],
):
    # One mapped task instance per shard; each is retried on its own.
    KubernetesPodOperator.partial(
        task_id="backfill",
        name="ultravox-archiver-backfill",
        max_active_tis_per_dag=SHARDS,
        # A backfill moves audio on both cores (~0.3 GiB/s per core): more CPU than the sync.
        **{
            **POD,
            "container_resources": k8s.V1ResourceRequirements(
                requests={"cpu": "1", "memory": "320Mi"}, limits={"memory": "512Mi"}
            ),
        },
    ).expand(arguments=[[*BACKFILL, "--shard", f"{shard}/{SHARDS}"] for shard in range(SHARDS)])
