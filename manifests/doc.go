// Package manifests holds strata's deployment manifests: the container
// image (Dockerfile), Argo WorkflowTemplates (argo/, with GCS and Azure
// variants), an Airflow DAG (airflow/), Kubeflow Pipelines v2 components
// and pipeline (kfp/), a Kubernetes Job (k8s/) and the gate policies
// (policy/). docs/DEPLOY.md walks through each.
//
// It has no Go API. Its tests are the proof that the manifests and the
// CLI agree: they validate the Argo templates against the Argo schema,
// check every pod against the Pod Security "restricted" profile, evaluate
// the retry rules as the orchestrators do, and run every step of every
// manifest with the real binary.
package manifests
