"""Loads strata_pilot_dag.py with Airflow stubbed (Airflow is not needed)
and prints, as JSON, what the DAG hands its operators: used by
manifests/airflow_test.go, which checks the pods and runs every stage's
arguments with the real strata binary.

    python3 dagcheck.py 2|3 [XCOM_JSON_FILE]

2 or 3 stubs only the import paths of Airflow 2 or of Airflow 3, so both
branches of the DAG's imports are exercised. With XCOM_JSON_FILE, the output
also has the gate's answer for that report summary.

The stub of KubernetesPodOperator.cleanup behaves as the provider's does
(apache-airflow-providers-cncf-kubernetes, operators/pod.py): a pod whose
strata container exited with a code in skip_on_exit_code raises
AirflowSkipException, any other failed pod AirflowException; the output's
"retry" table is what StrataPodOperator makes of each failure.
"""

import importlib.util
import json
import os
import sys
import types

TASKS = []
EDGES = []


class AirflowException(Exception):
    pass


class AirflowFailException(AirflowException):
    pass


class AirflowSkipException(AirflowException):
    pass


class _Task:
    def __init__(self, kind, **kwargs):
        self.kind = kind
        self.kwargs = kwargs
        TASKS.append(self)

    def __rshift__(self, other):
        EDGES.append([self.kwargs["task_id"], other.kwargs["task_id"]])
        return other


class KubernetesPodOperator(_Task):
    def __init__(self, **kwargs):
        super().__init__("KubernetesPodOperator", **kwargs)
        self.skip_on_exit_code = kwargs.get("skip_on_exit_code") or []

    def build_pod_request_obj(self, context=None):
        # What the provider builds for do_xcom_push: the base container and
        # the XCom sidecar, which has no security context.
        containers = [_Model(name="base", security_context=self.kwargs.get("container_security_context"))]
        if self.kwargs.get("do_xcom_push"):
            containers.append(_Model(name="airflow-xcom-sidecar", security_context=None,
                                     image="alpine", command=["sh", "-c", "sleep"]))
        return _Model(spec=_Model(containers=containers))

    def cleanup(self, pod, remote_pod):
        code = None
        for s in remote_pod.status.container_statuses or []:
            if s.name == "base" and s.state.terminated:
                code = s.state.terminated.exit_code
        if code in self.skip_on_exit_code:
            raise AirflowSkipException("skip")
        if code != 0:
            raise AirflowException("Pod returned a failure.")


class ShortCircuitOperator(_Task):
    def __init__(self, **kwargs):
        super().__init__("ShortCircuitOperator", **kwargs)


class DAG:
    last = None

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        DAG.last = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Model:
    """A kubernetes.client model: keyword arguments as attributes."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def to_json(v):
    """A model as the Kubernetes API spells it (camelCase, no nulls)."""
    if isinstance(v, _Model):
        return {_camel(k): to_json(x) for k, x in v.__dict__.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    return v


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


MODELS = [
    "V1Volume", "V1PersistentVolumeClaimVolumeSource", "V1EmptyDirVolumeSource", "V1VolumeMount",
    "V1ResourceRequirements", "V1PodSecurityContext", "V1SecurityContext", "V1SeccompProfile",
    "V1Capabilities", "V1EnvVar", "V1EnvVarSource", "V1ResourceFieldSelector",
]


def stub(version):
    models = _module("kubernetes.client.models", **{m: _Model for m in MODELS})
    _module("kubernetes")
    _module("kubernetes.client", models=models)
    _module("airflow.exceptions", AirflowException=AirflowException,
            AirflowFailException=AirflowFailException, AirflowSkipException=AirflowSkipException)
    _module("airflow.providers")
    _module("airflow.providers.cncf")
    _module("airflow.providers.cncf.kubernetes")
    _module("airflow.providers.cncf.kubernetes.operators")
    _module("airflow.providers.cncf.kubernetes.operators.pod", KubernetesPodOperator=KubernetesPodOperator)
    if version == "3":
        sys.modules["airflow"] = types.ModuleType("airflow")
        _module("airflow.sdk", DAG=DAG)
        _module("airflow.providers.standard")
        _module("airflow.providers.standard.operators")
        _module("airflow.providers.standard.operators.python", ShortCircuitOperator=ShortCircuitOperator)
    else:
        _module("airflow", DAG=DAG)
        _module("airflow.operators")
        _module("airflow.operators.python", ShortCircuitOperator=ShortCircuitOperator)


class _TI:
    def __init__(self, value):
        self.value = value

    def xcom_pull(self, task_ids=None):
        return self.value


def _remote_pod(code):
    """A failed pod as the API returns it: the strata container terminated
    with code, or (code None) no terminated state (evicted or deleted)."""
    terminated = _Model(exit_code=code) if code is not None else None
    status = _Model(name="base", state=_Model(terminated=terminated))
    return _Model(status=_Model(container_statuses=[status]))


def retry_table(operator):
    """What each failure of the pod does to the task: retry, fail or skip."""
    out = {}
    for label, code in [("1", 1), ("2", 2), ("3", 3), ("4", 4), ("134", 134), ("137", 137), ("evicted", None)]:
        try:
            operator.cleanup(None, _remote_pod(code))
            out[label] = "success"
        except AirflowSkipException:
            out[label] = "skip"
        except AirflowFailException:
            out[label] = "fail"
        except AirflowException:
            out[label] = "retry"
    return out


def main():
    stub(sys.argv[1])
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strata_pilot_dag.py")
    spec = importlib.util.spec_from_file_location("strata_pilot_dag", path)
    dag_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_module)

    out = {
        "dag_id": DAG.last.kwargs["dag_id"],
        "params": DAG.last.kwargs["params"],
        "default_args": {k: str(v) for k, v in DAG.last.kwargs["default_args"].items()},
        "edges": EDGES,
        "tasks": [],
    }
    for t in TASKS:
        kw = t.kwargs
        task = {
            "task_id": kw["task_id"],
            "kind": t.kind,
            "class": type(t).__name__,
            "image": kw.get("image"),
            "cmds": kw.get("cmds"),
            "arguments": kw.get("arguments"),
            "do_xcom_push": kw.get("do_xcom_push", False),
            "skip_on_exit_code": kw.get("skip_on_exit_code"),
            "retries": kw.get("retries"),
        }
        if t.kind == "KubernetesPodOperator":
            containers = [to_json(c) for c in t.build_pod_request_obj().spec.containers]
            base = containers[0]
            base.update({
                "env": to_json(kw.get("env_vars")),
                "resources": to_json(kw.get("container_resources")),
                "volumeMounts": to_json(kw.get("volume_mounts")),
            })
            task["pod"] = {
                "securityContext": to_json(kw.get("security_context")),
                "containers": containers,
                "volumes": to_json(kw.get("volumes")),
                "activeDeadlineSeconds": kw.get("active_deadline_seconds"),
            }
            task["execution_timeout_seconds"] = kw["execution_timeout"].total_seconds() if kw.get("execution_timeout") else None
            task["retry"] = retry_table(t)
        out["tasks"].append(task)
    gates = {t.kwargs["task_id"]: t.kwargs["python_callable"] for t in TASKS if t.kind == "ShortCircuitOperator"}
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            out["gate"] = bool(gates["gate"](ti=_TI(json.load(f))))
    out["gate_without_summary"] = bool(gates["gate"](ti=_TI(None)))
    out["mlflow_enabled"] = {
        "without_uri": bool(gates["mlflow_enabled"](params=dict(out["params"]))),
        "with_uri": bool(gates["mlflow_enabled"](params=dict(out["params"], mlflow_tracking_uri="http://mlflow:5000"))),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
