"""Loads strata_pilot_dag.py with Airflow stubbed (Airflow is not needed)
and prints, as JSON, what the DAG hands its operators: used by
manifests/airflow_test.go, which runs every stage's arguments with the real
strata binary.

    python3 dagcheck.py 2|3 [XCOM_JSON_FILE]

2 or 3 stubs only the import paths of Airflow 2 or of Airflow 3, so both
branches of the DAG's imports are exercised. With XCOM_JSON_FILE, the output
also has the gate's answer for that report summary.
"""

import importlib.util
import json
import os
import sys
import types

TASKS = []
EDGES = []


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
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def stub(version):
    models = _module(
        "kubernetes.client.models",
        V1Volume=_Model,
        V1PersistentVolumeClaimVolumeSource=_Model,
        V1VolumeMount=_Model,
        V1ResourceRequirements=_Model,
    )
    _module("kubernetes")
    _module("kubernetes.client", models=models)
    _module("airflow.providers")
    _module("airflow.providers.cncf")
    _module("airflow.providers.cncf.kubernetes")
    _module("airflow.providers.cncf.kubernetes.operators")
    _module("airflow.providers.cncf.kubernetes.operators.pod", KubernetesPodOperator=KubernetesPodOperator)
    if version == "3":
        _module("airflow")
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


def main():
    stub(sys.argv[1])
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strata_pilot_dag.py")
    spec = importlib.util.spec_from_file_location("strata_pilot_dag", path)
    dag_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_module)

    out = {
        "dag_id": DAG.last.kwargs["dag_id"],
        "params": DAG.last.kwargs["params"],
        "edges": EDGES,
        "tasks": [],
    }
    for t in TASKS:
        kw = t.kwargs
        out["tasks"].append(
            {
                "task_id": kw["task_id"],
                "kind": t.kind,
                "image": kw.get("image"),
                "cmds": kw.get("cmds"),
                "arguments": kw.get("arguments"),
                "do_xcom_push": kw.get("do_xcom_push", False),
                "skip_on_exit_code": kw.get("skip_on_exit_code"),
                "retries": kw.get("retries"),
            }
        )
    gate = next(t for t in TASKS if t.kind == "ShortCircuitOperator").kwargs["python_callable"]
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            out["gate"] = bool(gate(ti=_TI(json.load(f))))
    out["gate_without_summary"] = bool(gate(ti=_TI(None)))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
