package manifests_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	"go.yaml.in/yaml/v3"

	"github.com/strata-ml/strata/mlflow/mlflowtest"
)

var update = flag.Bool("update", false, "rewrite the generated manifests (the GCS and Azure Argo variants)")

// retryExpression evaluates a retryStrategy.expression as Argo v4 does
// (workflow/controller/operator.go, buildRetryStrategyLocalScope, and
// util/expr/env): with expr-lang, asInt as expr's builtin int, and
// lastRetry.exitCode "-1" when the last attempt has no exit code.
func retryExpression(t *testing.T, expression, exitCode, status, message string) bool {
	t.Helper()
	env := map[string]any{
		"asInt": builtin.Int,
		"lastRetry": map[string]any{
			"exitCode": exitCode,
			"status":   status,
			"duration": "12",
			"message":  message,
		},
	}
	prog, err := expr.Compile(expression, expr.Env(env))
	if err != nil {
		t.Fatalf("retryStrategy.expression %q: %v", expression, err)
	}
	v, err := expr.Run(prog, env)
	if err != nil {
		t.Fatalf("retryStrategy.expression %q: %v", expression, err)
	}
	b, ok := v.(bool)
	if !ok {
		t.Fatalf("retryStrategy.expression %q: %T, want bool", expression, v)
	}
	return b
}

// retryCases is how Argo v4 reports each kind of failure to the retry
// expression: the main container's exit code (-1 when the pod ended
// without one), the node's phase (Error for a pod that vanished or an
// executor failure, else Failed) and its message. From the controller's
// assessNodeStatus, inferFailedReason and pod-deletion handling, and
// emissary's exit codes (a signalled process: 137).
var retryCases = []struct {
	name                      string
	exitCode, status, message string
	retry                     bool
}{
	{"runtime error", "1", "Failed", "main: Error (exit code 1)", true},
	{"bad input", "2", "Failed", "main: Error (exit code 2)", false},
	{"NO-GO", "3", "Failed", "main: Error (exit code 3)", false},
	{"INCONCLUSIVE", "4", "Failed", "main: Error (exit code 4)", false},
	{"OOMKilled", "137", "Failed", "main: OOMKilled (exit code 137)", true},
	{"evicted, node under memory pressure", "137", "Failed", "The node was low on resource: memory.", true},
	{"evicted before an exit code", "-1", "Failed", "The node was low on resource: ephemeral-storage.", true},
	{"preempted: SIGTERM, checkpoint, exit 1", "1", "Failed", "main: Error (exit code 1)", true},
	{"preempted: killed after the grace period", "137", "Failed", "main: Error (exit code 137)", true},
	{"preempted: pod deleted", "-1", "Error", "pod deleted", true},
	{"SIGTERM not handled", "143", "Failed", "main: Error (exit code 143)", true},
	{"executor failed saving outputs", "0", "Error", "wait: Error (exit code 1): failed to put file", true},
	{"bad input, node in Error", "2", "Error", "main: Error (exit code 2)", false},
	{"emissary error", "64", "Failed", "main: Error (exit code 64)", false},
	{"crash in strata (SIGABRT)", "134", "Failed", "main: Error (exit code 134)", false},
}

// TestArgoRetryTruthTable: every container template of every Argo file
// has the one retry strategy, and its expression retries exit 1 and the
// failures of the infrastructure (137, 143, evictions, preemption) and
// never 2, 3 or 4.
func TestArgoRetryTruthTable(t *testing.T) {
	var expression string
	for _, f := range argoFiles {
		for _, tpl := range loadTemplate(t, f).Spec.Templates {
			if tpl.Container == nil {
				continue
			}
			rs := tpl.RetryStrategy
			if rs == nil || rs.RetryPolicy != "Always" || rs.Limit != "3" {
				t.Errorf("%s: template %s: retryStrategy %+v, want limit 3, retryPolicy Always", f, tpl.Name, rs)
				continue
			}
			if expression == "" {
				expression = rs.Expression
			}
			if rs.Expression != expression {
				t.Errorf("%s: template %s: expression %q, want the pilot's %q", f, tpl.Name, rs.Expression, expression)
			}
		}
	}
	for _, c := range retryCases {
		got := retryExpression(t, expression, c.exitCode, c.status, c.message)
		t.Logf("%-45s exit %4s %-6s retry %v", c.name, c.exitCode, c.status, got)
		if got != c.retry {
			t.Errorf("%s (exit %s, %s): retry %v, want %v", c.name, c.exitCode, c.status, got, c.retry)
		}
	}
}

// executorContainer is Argo's init and wait container as the controller
// configuration of manifests/argo/workflow-controller-configmap.yaml makes
// it.
func executorContainer(t *testing.T) container {
	t.Helper()
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	b, err := os.ReadFile("argo/workflow-controller-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	var c container
	if err := yaml.Unmarshal([]byte(cm.Data["executor"]), &c); err != nil {
		t.Fatalf("workflow-controller-configmap.yaml executor: %v", err)
	}
	return c
}

// TestArgoRestrictedProfile builds the pod of every container template as
// Argo does (the workflow's securityContext and volumes, the template's
// container as main, Argo's init and wait containers from the controller
// configuration) and checks it against the restricted profile, then
// checks strata's own hardening: read-only root, requests and limits,
// threads from the CPU limit, and deadlines.
func TestArgoRestrictedProfile(t *testing.T) {
	exec := executorContainer(t)
	init, wait := exec, exec
	init.Name, wait.Name = "init", "wait"
	for _, f := range argoFiles {
		wt := loadTemplate(t, f)
		if wt.Spec.ActiveDeadlineSeconds <= 0 {
			t.Errorf("%s: no spec.activeDeadlineSeconds", f)
		}
		for _, tpl := range wt.Spec.Templates {
			if tpl.Container == nil {
				continue
			}
			main := *tpl.Container
			main.Name = "main"
			pod := podSpec{
				SecurityContext: wt.Spec.SecurityContext,
				InitContainers:  []container{init},
				Containers:      []container{main, wait},
				Volumes:         append(append([]map[string]any{}, wt.Spec.Volumes...), tpl.Volumes...),
			}
			for _, v := range restrictedViolations(pod) {
				t.Errorf("%s: template %s: %s", f, tpl.Name, v)
			}
			// strata mlflow does no linear algebra: no OpenBLAS to size.
			for _, v := range hardeningViolations(main, tpl.Name != "mlflow") {
				t.Errorf("%s: template %s: %s", f, tpl.Name, v)
			}
			if d, err := strconv.ParseInt(tpl.ActiveDeadlineSeconds, 10, 64); err != nil || d <= 0 || d > wt.Spec.ActiveDeadlineSeconds {
				t.Errorf("%s: template %s: activeDeadlineSeconds %q, want a step timeout within the workflow's %d",
					f, tpl.Name, tpl.ActiveDeadlineSeconds, wt.Spec.ActiveDeadlineSeconds)
			}
			if strings.HasSuffix(main.Image, ":latest") || !strings.Contains(main.Image, "{{workflow.parameters.image}}") {
				t.Errorf("%s: template %s: image %q, want the image parameter", f, tpl.Name, main.Image)
			}
		}
		for _, p := range wt.Spec.Arguments.Parameters {
			if p.Name == "image" && (p.Value == nil || !imageTagRE.MatchString(*p.Value)) {
				t.Errorf("%s: image parameter %v: want a version tag, never latest", f, p.Value)
			}
		}
	}
	for _, v := range hardeningViolations(exec, false) {
		if !strings.Contains(v, "/tmp") { // Argo mounts its own volumes into its containers
			t.Errorf("workflow-controller-configmap.yaml executor: %s", v)
		}
	}
}

// imageTagRE is a strata image by version tag (vMAJOR.MINOR.PATCH).
var imageTagRE = regexp.MustCompile(`^ghcr\.io/strata-ml/strata:v[0-9]+\.[0-9]+\.[0-9]+$`)

// storageRE matches a key-only artifact location of the S3 templates.
var storageRE = regexp.MustCompile(`(?m)^(\s*)s3:\n(\s*)key: (.*)$`)

// argoVariant rewrites an S3 template for another store. GCS: the
// key-only artifacts' `s3: {key}` become `gcs: {key}`, placed in the
// bucket of the workflow's artifact repository. Azure: the schema wants
// every Azure artifact to name its endpoint and container, so they become
// two workflow parameters and each artifact names them, with the
// workload's Azure identity as credentials (useSDKCreds).
func argoVariant(src []byte, store, source string) []byte {
	var out []byte
	switch store {
	case "gcs":
		out = storageRE.ReplaceAll(src, []byte("${1}gcs:\n${2}key: ${3}"))
	case "azure":
		out = storageRE.ReplaceAll(src, []byte("${1}azure:\n"+
			"${2}endpoint: \"{{workflow.parameters.azure-endpoint}}\"\n"+
			"${2}container: \"{{workflow.parameters.azure-container}}\"\n"+
			"${2}useSDKCreds: true\n"+
			"${2}blob: ${3}"))
		out = bytes.Replace(out, []byte("  arguments:\n    parameters:\n"), []byte("  arguments:\n    parameters:\n"+
			"      - name: azure-endpoint\n        value: https://strataartifacts.blob.core.windows.net\n"+
			"        description: the storage account's Blob endpoint\n"+
			"      - name: azure-container\n        value: strata-artifacts\n"+
			"        description: the Blob container the artifacts live in\n"), 1)
	}
	header := fmt.Sprintf("# Generated from %s for a %s artifact repository by\n# `go test ./manifests/ -run TestArgoArtifactVariants -args -update`; edit the source.\n",
		source, map[string]string{"gcs": "Google Cloud Storage", "azure": "Azure Blob Storage"}[store])
	return append([]byte(header), out...)
}

// TestArgoArtifactVariants: the GCS and Azure templates are the S3 ones
// with every key-only artifact moved to the other store, and nothing else
// changed; no template carries a bucket, endpoint or credentials (the
// artifact repository does).
func TestArgoArtifactVariants(t *testing.T) {
	for _, src := range []string{"argo/pilot-workflowtemplate.yaml", "argo/sweep-workflowtemplate.yaml"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(storageRE.FindAll(b, -1)); n < 3 || bytes.Count(b, []byte("s3:")) != n {
			t.Errorf("%s: %d key-only s3 artifacts of %d s3 blocks: every s3 block must be key-only", src, n, bytes.Count(b, []byte("s3:")))
		}
		for _, store := range []string{"gcs", "azure"} {
			dst := filepath.Join("argo", store, filepath.Base(src))
			want := argoVariant(b, store, "../"+filepath.Base(src))
			if *update {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(dst, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: go test ./manifests/ -run TestArgoArtifactVariants -args -update", dst)
			}
			if bytes.Contains(got, []byte("s3:")) {
				t.Errorf("%s: still has an s3 artifact", dst)
			}
		}
	}
}

// TestArgoConfigMapsSchema validates the controller's executor container
// and each artifact repository of artifact-repositories.yaml against their
// definitions in the Argo schema, strictly.
func TestArgoConfigMapsSchema(t *testing.T) {
	var cm struct {
		Metadata struct {
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
	}
	b, err := os.ReadFile("argo/artifact-repositories.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	repo := argoSchemaDef(t, "io.argoproj.workflow.v1alpha1.ArtifactRepository")
	for _, store := range []string{"s3", "gcs", "azure"} {
		entry, ok := cm.Data[store]
		if !ok {
			t.Errorf("artifact-repositories.yaml: no %s entry", store)
			continue
		}
		if err := repo.Validate(yamlToJSON(t, []byte(entry))); err != nil {
			t.Errorf("artifact-repositories.yaml %s: %v", store, err)
		}
	}
	if def := cm.Metadata.Annotations["workflows.argoproj.io/default-artifact-repository"]; cm.Data[def] == "" {
		t.Errorf("artifact-repositories.yaml: the default repository %q is not an entry", def)
	}

	var ctrl struct {
		Data map[string]string `yaml:"data"`
	}
	b, err = os.ReadFile("argo/workflow-controller-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ctrl); err != nil {
		t.Fatal(err)
	}
	// The executor is a container without a name (the controller names it).
	exec := yamlToJSON(t, []byte(ctrl.Data["executor"]))
	exec.(map[string]any)["name"] = "executor"
	if err := argoSchemaDef(t, "io.k8s.api.core.v1.Container").Validate(exec); err != nil {
		t.Errorf("workflow-controller-configmap.yaml executor: %v", err)
	}
}

// TestArgoPilotMLflow runs the pilot with a tracking server (the
// stand-in of mlflow/mlflowtest): the mlflow step hands the run over with
// the documented requests only; on GO the finetuned model is uploaded and
// registered, on NO-GO the decision is logged and nothing registered.
func TestArgoPilotMLflow(t *testing.T) {
	for _, tt := range []struct{ policy, decision string }{{"default", "go"}, {"strict", "no-go"}} {
		t.Run(tt.decision, func(t *testing.T) {
			s := mlflowtest.NewServer()
			defer s.Close()
			r := pilotRun(t, "argo/pilot-workflowtemplate.yaml", map[string]string{
				"policy": "/etc/strata/policy/" + tt.policy + ".yaml", "mlflow-tracking-uri": s.URL,
			})
			r.run("pilot", nil, nil)
			checkMLflow(t, s, tt.decision, "strata-pilot-test", r.reportJSON(t), func(name string) string {
				m, _ := filepath.Glob(filepath.Join(r.root, "pods", "*-"+name, "work", "out", name))
				if len(m) == 0 {
					t.Fatalf("no %s pod output", name)
				}
				return m[0]
			})
		})
	}
}

// checkMLflow checks what the stand-in received from one pilot's hand-off.
// pod returns the directory of the first pod of a template.
func checkMLflow(t *testing.T, s *mlflowtest.Server, decision, runName string, rep map[string]any, files func(string) string) {
	t.Helper()
	if len(s.Errors) != 0 {
		t.Fatalf("protocol errors: %q", s.Errors)
	}
	if len(s.Runs) != 1 {
		t.Fatalf("%d runs, want 1 (requests %q)", len(s.Runs), s.Requests)
	}
	for id, run := range s.Runs {
		if run.Name != runName || run.Status != "FINISHED" || run.Tags["strata.decision"] != decision {
			t.Errorf("run %s %+v: want %s FINISHED with decision %s", id, run, runName, decision)
		}
		if run.Params["structure"] != "monarch" || run.Params["seed"] != "7" {
			t.Errorf("params %v", run.Params)
		}
		acc := rep["metrics"].([]any)[0].(map[string]any)
		if acc["metric"] != "accuracy" || run.Metrics["accuracy.delta"] != acc["delta"] || run.Metrics["accuracy.delta_vs_control"] != acc["delta_vs_control"] {
			t.Errorf("metrics %v, want report.json's accuracy %v", run.Metrics, acc)
		}
		html, err := os.ReadFile(filepath.Join(files("report"), "report.html"))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := s.Artifact(id, "report/report.html"); !ok || !bytes.Equal(got, html) {
			t.Errorf("report/report.html: uploaded %v, equal %v", ok, bytes.Equal(got, html))
		}
		model, err := os.ReadFile(filepath.Join(files("finetune"), "model.arrow"))
		if err != nil {
			t.Fatal(err)
		}
		got, uploaded := s.Artifact(id, "model/model.arrow")
		if go_ := decision == "go"; uploaded != go_ || len(s.ModelVersions) != map[bool]int{true: 1, false: 0}[go_] {
			t.Fatalf("model uploaded %v, versions %+v: want both on GO only", uploaded, s.ModelVersions)
		}
		if uploaded && (!bytes.Equal(got, model) || s.ModelVersions[0].Source != "mlflow-artifacts:/"+run.ExperimentID+"/"+id+"/artifacts/model") {
			t.Errorf("registered %+v from a model of %d bytes, want the finetuned model.arrow", s.ModelVersions[0], len(got))
		}
	}
}
