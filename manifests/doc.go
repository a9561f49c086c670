// Package manifests holds strata's deployment manifests: the container
// image (Dockerfile), Argo WorkflowTemplates (argo/), an Airflow DAG
// (airflow/), a Kubernetes Job (k8s/) and the gate policies (policy/).
//
// It has no Go API. Its tests are the proof that the manifests and the
// CLI agree: they validate the Argo templates against the Argo schema and
// run every step of every manifest with the real binary.
package manifests
