"""Hourly `ultravox-archiver sync` as an Airflow DAG (Airflow 2.6+ or 3).

Copy into the DAGs folder of a deployment whose workers have `ultravox-archiver` installed. The
archiver keeps its state in the destination, so this is one task with no parameters: the first run
starts at ARCHIVER_SINCE, each later one archives whatever is new or still open since the last one,
and `catchup` stays off (a sync is not tied to its data interval; a one-off `backfill` with --since
and --until covers history).

Exit codes map to task states: 0 success; 4 (another run holds some partitions; the next run takes
them) is a skip, not a failure; 1 (partial: some calls failed and a re-run retries them) fails the
try and Airflow's retries re-run it; 2 (configuration) and 3 (fatal: key rejected, destination
unusable) fail too and want a person.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3 moved the operator into the standard provider.
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

with DAG(
    dag_id="ultravox_archiver_sync",
    schedule="15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # overlapping runs are safe (leases) but pointless
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["ultravox", "archive"],
) as dag:
    BashOperator(
        task_id="sync",
        bash_command="ultravox-archiver sync --log-format json --summary-format json",
        # The key from a file the deployment mounts (a Kubernetes Secret, a secrets backend sync):
        # never an Airflow Variable printed into rendered templates. S3 access comes from the
        # worker's AWS chain (instance role, AWS_PROFILE), never from here.
        env={
            "ULTRAVOX_API_KEY_FILE": "/run/secrets/ultravox/api-key",
            "ARCHIVE_DEST": "s3://my-bucket/ultravox",
            # Where the first run into an empty destination starts; later runs continue from the
            # archive's own state.
            "ARCHIVER_SINCE": "2025-01-01",
        },
        append_env=True,
        skip_on_exit_code=4,
        execution_timeout=timedelta(minutes=55),
    )
