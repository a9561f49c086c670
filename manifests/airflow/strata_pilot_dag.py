"""strata pilot as an Airflow DAG: convert -> finetune -> validate -> report,
one KubernetesPodOperator per stage on a shared volume, then a gate on the
decision and the promotion of a GO candidate.

Exit codes of strata (PRODUCT.md section 6) and what they do here:

- report: 0 GO, the JSON summary pushed to XCom (``--xcom-file
  /airflow/xcom/return.json``, ``do_xcom_push``); 4 INCONCLUSIVE skips the
  task (``skip_on_exit_code``) and so everything after it; 3 NO-GO fails it.
- gate: a ShortCircuitOperator that lets ``promote`` run only when the
  summary in XCom says ``go``.
- 1 (runtime error) is what retries are for; Airflow retries a failed task
  whatever its exit code, so a 2 (bad input) is retried too, and fails again.

Paths: the PersistentVolumeClaim ``strata-data`` is mounted at /shared in
every pod; inputs are read from /shared/in, each run writes to
/shared/runs/<run_id>. The image (manifests/Dockerfile) runs strata as its
entrypoint, so only ``arguments`` are given.

Works with Airflow 2 (2.4+) and Airflow 3, with
apache-airflow-providers-cncf-kubernetes 7.14+ (``skip_on_exit_code``).
``go test ./manifests/...`` compiles this file, loads it with Airflow
stubbed, and runs every stage's arguments with the real strata binary.
"""

from __future__ import annotations

import datetime

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

try:  # Airflow 3: the standard provider
    from airflow.providers.standard.operators.python import ShortCircuitOperator
except ImportError:  # Airflow 2
    from airflow.operators.python import ShortCircuitOperator

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

SHARED = "/shared"
IN = SHARED + "/in"
RUN = SHARED + "/runs/{{ run_id }}"
XCOM_FILE = "/airflow/xcom/return.json"
EXIT_INCONCLUSIVE = 4

# The DAG's parameters (override them when triggering a run). Model and data
# are paths under /shared/in.
PARAMS = {
    "image": "ghcr.io/strata-ml/strata:latest",
    "model": "models/baseline.safetensors",
    "train": "data/train.parquet",
    "test": "data/test.parquet",
    "label": "label",
    "structure": "monarch",
    "blocks": "4",
    "rank": "0",
    "residual": "lowrank",
    "residual_rank": "8",
    "epochs": "15",
    "lr": "0.001",
    "bootstrap": "1000",
    "seed": "7",
    "policy": "/etc/strata/policy/default.yaml",
}

# Every stage's strata arguments (Jinja-templated by Airflow). The test in
# manifests/ runs exactly these lists.
STAGE_ARGS = {
    "convert": [
        "convert",
        "--model=" + IN + "/{{ params.model }}",
        "--out=" + RUN + "/convert",
        "--structure={{ params.structure }}",
        "--blocks={{ params.blocks }}",
        "--rank={{ params.rank }}",
        "--residual={{ params.residual }}",
        "--residual-rank={{ params.residual_rank }}",
        "--seed={{ params.seed }}",
    ],
    "finetune": [
        "finetune",
        "--model=" + RUN + "/convert/model.arrow",
        "--train=" + IN + "/{{ params.train }}",
        "--label={{ params.label }}",
        "--valid-fraction=0.15",
        "--epochs={{ params.epochs }}",
        "--lr={{ params.lr }}",
        "--seed={{ params.seed }}",
        "--out=" + RUN + "/finetune",
    ],
    "validate": [
        "validate",
        "--baseline=" + IN + "/{{ params.model }}",
        "--candidate=" + RUN + "/finetune/model.arrow",
        "--train-log=" + RUN + "/finetune",
        "--data=" + IN + "/{{ params.test }}",
        "--label={{ params.label }}",
        "--bootstrap={{ params.bootstrap }}",
        "--seed={{ params.seed }}",
        "--out=" + RUN + "/validate",
    ],
    "report": [
        "report",
        "--validation=" + RUN + "/validate/validation.json",
        "--policy={{ params.policy }}",
        "--out=" + RUN + "/report",
        "--decision-file=" + RUN + "/decision",
        "--metrics-file=" + RUN + "/metrics.txt",
        "--xcom-file=" + XCOM_FILE,
    ],
    "promote": [
        "export",
        "--model=" + RUN + "/finetune/model.arrow",
        "--format=safetensors",
        "--out=" + RUN + "/promoted.safetensors",
    ],
}


def decision_is_go(ti=None, **_):
    """The gate: True (run promote) only when report's summary says go."""
    summary = ti.xcom_pull(task_ids="report") if ti is not None else None
    return isinstance(summary, dict) and summary.get("decision") == "go"


def _stage(task_id: str, **kwargs) -> KubernetesPodOperator:
    return KubernetesPodOperator(
        task_id=task_id,
        name="strata-" + task_id,
        image="{{ params.image }}",
        arguments=STAGE_ARGS[task_id],
        volumes=[
            k8s.V1Volume(
                name="shared",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="strata-data"),
            )
        ],
        volume_mounts=[k8s.V1VolumeMount(name="shared", mount_path=SHARED)],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "8Gi"}
        ),
        get_logs=True,
        on_finish_action="delete_pod",
        **kwargs,
    )


with DAG(
    dag_id="strata_pilot",
    description="strata pilot: convert, finetune, validate, report, promote on GO",
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1),
    catchup=False,
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=1)},
    tags=["strata"],
) as dag:
    convert = _stage("convert")
    finetune = _stage("finetune")
    validate = _stage("validate")
    report = _stage(
        "report",
        do_xcom_push=True,
        skip_on_exit_code=[EXIT_INCONCLUSIVE],
        retries=0,  # 3 and 4 are decisions, not errors
    )
    gate = ShortCircuitOperator(task_id="gate", python_callable=decision_is_go)
    promote = _stage("promote")

    convert >> finetune >> validate >> report >> gate >> promote
