package manifests_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// dockerfileInstructions returns the Dockerfile's instructions, one per
// logical line (continuations joined), comments dropped.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

// TestDockerfileBuildsWithMake: the image's build stage runs exactly the
// Makefile's build (no Docker engine runs in CI, so the image is only as
// good as this), `make image` builds this Dockerfile, and the final stage
// has what the manifests rely on.
func TestDockerfileBuildsWithMake(t *testing.T) {
	ins := dockerfileInstructions(t)
	var builds []string
	for _, in := range ins {
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "make") {
			builds = append(builds, strings.TrimPrefix(in, "RUN "))
		}
	}
	const wantBuild = `make build VERSION="${VERSION}" COMMIT="${COMMIT}"`
	if len(builds) != 1 || builds[0] != wantBuild {
		t.Fatalf("Dockerfile make commands %q, want exactly [%s]", builds, wantBuild)
	}
	// The same command, with the build args expanded, is a valid
	// invocation of the Makefile that builds bin/strata with go build.
	cmd := exec.Command("make", "-n", "-C", repo, "build", "VERSION=v0.0.0-test", "COMMIT=0000000")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make -n build: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "go build") || !strings.Contains(s, "-o bin/strata") || !strings.Contains(s, "provenance.version=v0.0.0-test") {
		t.Errorf("make -n build printed %q, want a go build of bin/strata stamped with the version", s)
	}

	want := []string{
		"COPY --from=build /src/bin/strata /usr/local/bin/strata",
		"COPY manifests/policy/*.yaml /etc/strata/policy/",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/bin/tini", "--", "strata"]`,
	}
	for _, w := range want {
		if !slices.Contains(ins, w) {
			t.Errorf("Dockerfile has no %q", w)
		}
	}
	var froms int
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			froms++
		}
		if strings.HasPrefix(in, "RUN ") && strings.Contains(in, "apt-get install") && strings.Contains(in, "tini") &&
			!strings.Contains(in, "libopenblas0") {
			t.Errorf("the runtime stage installs tini but not the OpenBLAS runtime the build links: %q", in)
		}
	}
	if froms != 2 {
		t.Errorf("Dockerfile has %d stages, want 2 (build, runtime)", froms)
	}

	// The base images are build arguments, pinned by digest.
	pinned := regexp.MustCompile(`^ARG (GO_IMAGE|BASE_IMAGE)=[a-z0-9./-]+:[a-z0-9.-]+@sha256:[0-9a-f]{64}$`)
	var pins int
	for _, in := range ins {
		if pinned.MatchString(in) {
			pins++
		}
	}
	if pins != 2 || !slices.Contains(ins, "FROM ${GO_IMAGE} AS build") || !slices.Contains(ins, "FROM ${BASE_IMAGE}") {
		t.Errorf("Dockerfile: %d of GO_IMAGE and BASE_IMAGE pinned by digest and used in FROM, want both", pins)
	}
}

// TestImageTargets: `make image` builds manifests/Dockerfile tagged with
// the version (never latest), `make demo` runs the binary `make build`
// makes (the same tags and version stamp), and the build context is cut
// by a root .dockerignore, the one file both BuildKit and the legacy
// builder read.
func TestImageTargets(t *testing.T) {
	makeN := func(target string) string {
		cmd := exec.Command("make", "-n", "-C", repo, target, "VERSION=v9.9.9", "COMMIT=0000000")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %s: %v\n%s", target, err, out)
		}
		return string(out)
	}
	img := makeN("image")
	if !strings.Contains(img, "build -f manifests/Dockerfile") || !strings.Contains(img, "-t ghcr.io/strata-ml/strata:v9.9.9 ") ||
		!strings.Contains(img, "--build-arg VERSION=v9.9.9") || strings.Contains(img, ":latest") {
		t.Errorf("make -n image:\n%s\nwant a build of manifests/Dockerfile tagged :v9.9.9 with the version stamped, never latest", img)
	}
	build, demo := makeN("build"), makeN("demo")
	goBuild := strings.SplitN(build, "\n", 2)[0]
	if !strings.HasPrefix(demo, goBuild+"\n") || !strings.Contains(demo, "bin/strata pilot --demo") {
		t.Errorf("make -n demo:\n%s\nwant the build of make build (%s), then bin/strata pilot --demo", demo, goBuild)
	}

	ignore, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatalf("no .dockerignore at the root of the build context: %v", err)
	}
	lines := strings.Fields(string(ignore))
	for _, want := range []string{".git", "bin"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	if _, err := os.Stat("Dockerfile.dockerignore"); err == nil {
		t.Error("manifests/Dockerfile.dockerignore exists: BuildKit would read it instead of the root .dockerignore")
	}
}

// TestK8sPilotJob runs the Job's command with the real binary: the image's
// entrypoint (strata) and the container's args, the ConfigMap's pilot.yaml
// at /config, the data volume at /data.
func TestK8sPilotJob(t *testing.T) {
	fx := demoFixture(t)
	b, err := os.ReadFile("k8s/pilot-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type doc struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			BackoffLimit          int   `yaml:"backoffLimit"`
			ActiveDeadlineSeconds int64 `yaml:"activeDeadlineSeconds"`
			PodFailurePolicy      struct {
				Rules []struct {
					Action      string `yaml:"action"`
					OnExitCodes *struct {
						ContainerName string `yaml:"containerName"`
						Operator      string `yaml:"operator"`
						Values        []int  `yaml:"values"`
					} `yaml:"onExitCodes"`
					OnPodConditions []struct {
						Type string `yaml:"type"`
					} `yaml:"onPodConditions"`
				} `yaml:"rules"`
			} `yaml:"podFailurePolicy"`
			Template struct {
				Spec struct {
					RestartPolicy string `yaml:"restartPolicy"`
					podSpec       `yaml:",inline"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var config string
	var job *doc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d doc
		if err := dec.Decode(&d); err != nil {
			break
		}
		switch d.Kind {
		case "ConfigMap":
			config = d.Data["pilot.yaml"]
		case "Job":
			job = &d
		}
	}
	if config == "" || job == nil {
		t.Fatal("k8s/pilot-job.yaml: want a ConfigMap with pilot.yaml and a Job")
	}

	// 2, 3, 4 and 134 fail the Job at once; a disruption (eviction,
	// preemption) is retried without counting; the rest (1, 137) is
	// retried up to backoffLimit.
	rules := job.Spec.PodFailurePolicy.Rules
	if job.Spec.BackoffLimit < 1 || len(rules) != 2 ||
		rules[0].Action != "Ignore" || len(rules[0].OnPodConditions) != 1 || rules[0].OnPodConditions[0].Type != "DisruptionTarget" ||
		rules[1].Action != "FailJob" || rules[1].OnExitCodes == nil ||
		rules[1].OnExitCodes.Operator != "In" || !slices.Equal(rules[1].OnExitCodes.Values, []int{2, 3, 4, 134}) {
		t.Errorf("podFailurePolicy %+v, backoffLimit %d: want Ignore on DisruptionTarget, FailJob on exit codes 2, 3, 4, 134, retries of the rest",
			rules, job.Spec.BackoffLimit)
	}
	if got := job.Spec.Template.Spec.RestartPolicy; got != "Never" {
		t.Errorf("restartPolicy %q, want Never (podFailurePolicy needs it)", got)
	}
	if job.Spec.ActiveDeadlineSeconds <= 0 {
		t.Error("no activeDeadlineSeconds")
	}
	pod := job.Spec.Template.Spec.podSpec
	for _, v := range restrictedViolations(pod) {
		t.Errorf("k8s/pilot-job.yaml: %s", v)
	}
	cs := pod.Containers
	if len(cs) != 1 || len(cs[0].Command) != 0 || rules[1].OnExitCodes == nil || rules[1].OnExitCodes.ContainerName != cs[0].Name {
		t.Fatalf("want one container, run by the image's entrypoint, named in podFailurePolicy")
	}
	for _, v := range hardeningViolations(cs[0], true) {
		t.Errorf("k8s/pilot-job.yaml: %s", v)
	}
	if !imageTagRE.MatchString(cs[0].Image) {
		t.Errorf("image %q: want a version tag, never latest", cs[0].Image)
	}

	root := t.TempDir()
	policyDir, err := filepath.Abs("policy")
	if err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{
		"/etc/strata/policy/": policyDir + "/",
	}
	for _, m := range cs[0].VolumeMounts {
		mounts[m.MountPath+"/"] = filepath.Join(root, m.Name) + "/"
		if err := os.MkdirAll(filepath.Join(root, m.Name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// One pass, so that a mapped path is never mapped again.
	var pairs []string
	for from, to := range mounts {
		pairs = append(pairs, from, to)
	}
	mapPath := strings.NewReplacer(pairs...).Replace
	if err := os.WriteFile(mapPath("/config/pilot.yaml"), []byte(mapPath(config)), 0o644); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		fx.baseline: "/data/models/baseline.arrow",
		fx.train:    "/data/train.arrow",
		fx.test:     "/data/test.arrow",
	} {
		if err := copyTree(src, mapPath(dst)); err != nil {
			t.Fatal(err)
		}
	}
	var args []string
	for _, a := range cs[0].Args {
		args = append(args, mapPath(a))
	}
	code, stderr := runStrata(t, root, nil, strataBin, args...)
	if code != 0 {
		t.Fatalf("strata %q: exit %d, want 0 (GO)\n%s", args, code, stderr)
	}
	got, err := os.ReadFile(mapPath("/data/runs/strata-pilot/decision"))
	if err != nil || string(got) != "go\n" {
		t.Errorf("decision file %q (%v), want go", got, err)
	}
}
