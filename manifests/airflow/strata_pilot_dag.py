"""strata pilot as an Airflow DAG: convert, then the candidate's fine-tuning
and the equal-budget control in parallel, validate against the baseline and
the control, report, then the promotion of a GO candidate and, when a
tracking server is given, the MLflow hand-off. One KubernetesPodOperator per
stage on a shared volume.

Exit codes of strata (PRODUCT.md section 6) and what they do here:

- report runs with ``--no-fail``: it exits 0 for GO, NO-GO and INCONCLUSIVE
  alike, so the JSON summary always reaches XCom (``--xcom-file
  /airflow/xcom/return.json``, ``do_xcom_push``); the decision is in it.
- gate: a ShortCircuitOperator that lets ``promote`` run only when that
  summary says ``go``. promote writes the structured model, never its dense
  copy: the trunk and correction factors with the architecture (``strata
  export --factors``), so the savings reach serving.
- 1 (runtime error) and the failures of the infrastructure (OOMKilled,
  eviction, preemption: the pod fails without a strata exit code) are
  retried; 2 (bad input), 3 and 4 fail the task at once, without retries
  (StrataPodOperator turns them into AirflowFailException).
- A retried fine-tuning resumes (``--resume``) from the checkpoint it left
  on the shared volume.

Pods: the Pod Security "restricted" profile (non-root, RuntimeDefault
seccomp, no privilege escalation, no capabilities) with a read-only root
file system and an emptyDir at /tmp, the XCom sidecar included; CPU and
memory requests and limits, with OpenBLAS and Go threads from the CPU limit;
a deadline per pod and a timeout per task.

Paths: the PersistentVolumeClaim ``strata-data`` (ReadWriteMany: the
candidate's and the control's pods run at once, possibly on two nodes) is
mounted at /shared in every pod; inputs are read from /shared/in, each run
writes to /shared/runs/<run_id>. The image (manifests/Dockerfile) runs
strata as its entrypoint, so only ``arguments`` are given.

Works with Airflow 2 (2.4+) and Airflow 3, with
apache-airflow-providers-cncf-kubernetes 7.14+.
``go test ./manifests/...`` compiles this file, loads it with Airflow
stubbed, checks every pod against the restricted profile and runs every
stage's arguments with the real strata binary.
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

from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

SHARED = "/shared"
IN = SHARED + "/in"
RUN = SHARED + "/runs/{{ run_id }}"
XCOM_FILE = "/airflow/xcom/return.json"
XCOM_SIDECAR = "airflow-xcom-sidecar"

# strata's exit codes that a retry cannot change: bad input, NO-GO and
# INCONCLUSIVE (report runs with --no-fail and exits 0 for the last two).
NEVER_RETRY = {2: "bad input", 3: "NO-GO", 4: "INCONCLUSIVE", 134: "a crash in strata, which the same input repeats"}

# The DAG's parameters (override them when triggering a run). Model and data
# are paths under /shared/in.
PARAMS = {
    "image": "ghcr.io/strata-ml/strata:v0.1.0",
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
    "mlflow_tracking_uri": "",
    "mlflow_experiment": "strata-pilot",
    "mlflow_model_name": "strata-pilot",
}


def _finetune(role: str, model: str) -> list:
    """The candidate's fine-tuning and the control's: the same budget."""
    return [
        "finetune",
        "--model=" + model,
        "--train=" + IN + "/{{ params.train }}",
        "--label={{ params.label }}",
        "--valid-fraction=0.15",
        "--epochs={{ params.epochs }}",
        "--lr={{ params.lr }}",
        "--seed={{ params.seed }}",
        "--out=" + RUN + "/" + role,
        "--resume",
    ]


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
    "finetune": _finetune("finetune", RUN + "/convert/model.arrow"),
    "control": _finetune("control", IN + "/{{ params.model }}"),
    "validate": [
        "validate",
        "--baseline=" + IN + "/{{ params.model }}",
        "--candidate=" + RUN + "/finetune/model.arrow",
        "--train-log=" + RUN + "/finetune",
        "--control=" + RUN + "/control/model.arrow",
        "--control-train-log=" + RUN + "/control",
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
        "--no-fail",
    ],
    "promote": [
        "export",
        "--model=" + RUN + "/finetune/model.arrow",
        "--factors",
        "--format=safetensors",
        "--out=" + RUN + "/promoted.safetensors",
    ],
    "mlflow": [
        "mlflow",
        "--report=" + RUN + "/report/report.json",
        "--model=" + RUN + "/finetune/model.arrow",
        "--experiment={{ params.mlflow_experiment }}",
        "--run-name={{ run_id }}",
        "--register={{ params.mlflow_model_name }}",
        "--param=structure={{ params.structure }}",
        "--param=blocks={{ params.blocks }}",
        "--param=epochs={{ params.epochs }}",
        "--param=lr={{ params.lr }}",
        "--param=seed={{ params.seed }}",
        "--param=policy={{ params.policy }}",
    ],
}

# Pod Security "restricted", for the pod and for each container.
POD_SECURITY = k8s.V1PodSecurityContext(
    run_as_non_root=True,
    run_as_user=65532,
    run_as_group=65532,
    fs_group=65532,
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
)
CONTAINER_SECURITY = k8s.V1SecurityContext(
    allow_privilege_escalation=False,
    read_only_root_filesystem=True,
    capabilities=k8s.V1Capabilities(drop=["ALL"]),
)

# Requests and limits, the Go heap's soft limit below the memory limit, and
# each task's deadline in seconds.
LARGE = {"cpu": "2", "memory": "8Gi", "gomemlimit": "7GiB"}
SMALL = {"cpu": "1", "memory": "1Gi", "gomemlimit": "900MiB"}
SIZE = {"report": SMALL, "mlflow": SMALL}
DEADLINE = {"convert": 3600, "finetune": 14400, "control": 14400, "validate": 7200,
            "report": 900, "promote": 3600, "mlflow": 900}


def harden_sidecars(pod):
    """The restricted container security context on the containers the
    operator adds to the pod (the XCom sidecar), which have none."""
    for c in pod.spec.containers:
        if c.name == XCOM_SIDECAR and c.security_context is None:
            c.security_context = CONTAINER_SECURITY
    return pod


def exit_code(remote_pod):
    """The exit code of the pod's strata container, or None when it has none
    (evicted or deleted before it ended)."""
    for status in (remote_pod.status.container_statuses or []) if remote_pod and remote_pod.status else []:
        if status.name == "base" and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


class StrataPodOperator(KubernetesPodOperator):
    """KubernetesPodOperator for strata: a failure a retry cannot change
    (exit 2, 3, 4, or 134, a crash) fails the task without its retries; every other
    failure, exit 1 and the failures of the infrastructure, is retried."""

    def build_pod_request_obj(self, context=None):
        return harden_sidecars(super().build_pod_request_obj(context))

    def cleanup(self, pod, remote_pod, *args, **kwargs):
        try:
            return super().cleanup(pod, remote_pod, *args, **kwargs)
        except (AirflowSkipException, AirflowFailException):
            raise
        except AirflowException as err:
            code = exit_code(remote_pod)
            if code in NEVER_RETRY:
                raise AirflowFailException(f"strata exited {code} ({NEVER_RETRY[code]}): not retried") from err
            raise


def decision_is_go(ti=None, **_):
    """The gate: True (run promote) only when report's summary says go."""
    summary = ti.xcom_pull(task_ids="report") if ti is not None else None
    return isinstance(summary, dict) and summary.get("decision") == "go"


def mlflow_configured(params=None, **_):
    """True when the run names an MLflow tracking server."""
    return bool((params or {}).get("mlflow_tracking_uri"))


def _threads():
    """OpenBLAS and Go threads from the container's CPU limit (rounded up):
    OpenBLAS otherwise starts one thread per core of the node."""
    ref = k8s.V1EnvVarSource(resource_field_ref=k8s.V1ResourceFieldSelector(resource="limits.cpu", divisor="1"))
    return [k8s.V1EnvVar(name=n, value_from=ref) for n in ("OPENBLAS_NUM_THREADS", "GOMAXPROCS")]


def _stage(task_id: str, **kwargs) -> StrataPodOperator:
    size = SIZE.get(task_id, LARGE)
    env = _threads() + [
        k8s.V1EnvVar(name="GOMEMLIMIT", value=size["gomemlimit"]),
        k8s.V1EnvVar(name="TMPDIR", value="/tmp"),
    ]
    if task_id == "mlflow":
        env.append(k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value="{{ params.mlflow_tracking_uri }}"))
    return StrataPodOperator(
        task_id=task_id,
        name="strata-" + task_id,
        image="{{ params.image }}",
        arguments=STAGE_ARGS[task_id],
        env_vars=env,
        volumes=[
            k8s.V1Volume(
                name="shared",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="strata-data"),
            ),
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="2Gi")),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="shared", mount_path=SHARED),
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
        ],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": size["cpu"], "memory": size["memory"]},
            limits={"cpu": size["cpu"], "memory": size["memory"]},
        ),
        security_context=POD_SECURITY,
        container_security_context=CONTAINER_SECURITY,
        active_deadline_seconds=DEADLINE[task_id],
        execution_timeout=datetime.timedelta(seconds=DEADLINE[task_id] + 600),
        get_logs=True,
        on_finish_action="delete_pod",
        **kwargs,
    )


with DAG(
    dag_id="strata_pilot",
    description="strata pilot: convert, finetune beside the control, validate, report, promote on GO",
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1),
    catchup=False,
    params=PARAMS,
    dagrun_timeout=datetime.timedelta(hours=12),
    default_args={
        "retries": 3,
        "retry_delay": datetime.timedelta(seconds=30),
        "retry_exponential_backoff": True,
    },
    tags=["strata"],
) as dag:
    convert = _stage("convert")
    finetune = _stage("finetune")
    control = _stage("control")
    validate = _stage("validate")
    report = _stage("report", do_xcom_push=True)
    gate = ShortCircuitOperator(task_id="gate", python_callable=decision_is_go)
    promote = _stage("promote")
    mlflow_enabled = ShortCircuitOperator(task_id="mlflow_enabled", python_callable=mlflow_configured)
    mlflow = _stage("mlflow")

    convert >> finetune >> validate
    control >> validate
    validate >> report >> gate >> promote
    report >> mlflow_enabled >> mlflow
