package manifests_test

// The Pod Security Standards, "Baseline" and "Restricted" profiles, as
// the Kubernetes documentation writes them:
//
//	https://kubernetes.io/docs/concepts/security/pod-security-standards/
//
// Each check below is one control of that page (its name in the
// message), over the fields the page lists ("Restricted Fields") and the
// values it allows ("Allowed Values"). Ephemeral containers and the
// Windows-only controls do not occur in strata's pods; HostProcess is
// checked all the same. Pods are assembled by the orchestrator (Argo adds
// its init and wait containers, Airflow's KubernetesPodOperator builds the
// pod from its arguments), so each test builds the pod the orchestrator
// would submit and checks that.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

type capabilities struct {
	Add  []string `yaml:"add" json:"add"`
	Drop []string `yaml:"drop" json:"drop"`
}

type profileType struct {
	Type string `yaml:"type" json:"type"`
}

type securityContext struct {
	Privileged               *bool         `yaml:"privileged" json:"privileged"`
	AllowPrivilegeEscalation *bool         `yaml:"allowPrivilegeEscalation" json:"allowPrivilegeEscalation"`
	RunAsNonRoot             *bool         `yaml:"runAsNonRoot" json:"runAsNonRoot"`
	RunAsUser                *int64        `yaml:"runAsUser" json:"runAsUser"`
	RunAsGroup               *int64        `yaml:"runAsGroup" json:"runAsGroup"`
	ReadOnlyRootFilesystem   *bool         `yaml:"readOnlyRootFilesystem" json:"readOnlyRootFilesystem"`
	ProcMount                string        `yaml:"procMount" json:"procMount"`
	Capabilities             *capabilities `yaml:"capabilities" json:"capabilities"`
	SeccompProfile           *profileType  `yaml:"seccompProfile" json:"seccompProfile"`
	AppArmorProfile          *profileType  `yaml:"appArmorProfile" json:"appArmorProfile"`
	SELinuxOptions           *struct {
		Type string `yaml:"type" json:"type"`
		User string `yaml:"user" json:"user"`
		Role string `yaml:"role" json:"role"`
	} `yaml:"seLinuxOptions" json:"seLinuxOptions"`
	WindowsOptions *struct {
		HostProcess *bool `yaml:"hostProcess" json:"hostProcess"`
	} `yaml:"windowsOptions" json:"windowsOptions"`
	// Pod level only.
	FSGroup            *int64  `yaml:"fsGroup" json:"fsGroup"`
	SupplementalGroups []int64 `yaml:"supplementalGroups" json:"supplementalGroups"`
	Sysctls            []struct {
		Name string `yaml:"name" json:"name"`
	} `yaml:"sysctls" json:"sysctls"`
}

type hostField struct {
	HTTPGet   *struct{ Host string } `yaml:"httpGet" json:"httpGet"`
	TCPSocket *struct{ Host string } `yaml:"tcpSocket" json:"tcpSocket"`
}

type envVar struct {
	Name      string  `yaml:"name" json:"name"`
	Value     *string `yaml:"value" json:"value"`
	ValueFrom *struct {
		ResourceFieldRef *struct {
			Resource string `yaml:"resource" json:"resource"`
			Divisor  string `yaml:"divisor" json:"divisor"`
		} `yaml:"resourceFieldRef" json:"resourceFieldRef"`
	} `yaml:"valueFrom" json:"valueFrom"`
}

type resources struct {
	Requests map[string]string `yaml:"requests" json:"requests"`
	Limits   map[string]string `yaml:"limits" json:"limits"`
}

type volumeMount struct {
	Name      string `yaml:"name" json:"name"`
	MountPath string `yaml:"mountPath" json:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly" json:"readOnly"`
}

type container struct {
	Name            string           `yaml:"name" json:"name"`
	Image           string           `yaml:"image" json:"image"`
	Command         []string         `yaml:"command" json:"command"`
	Args            []string         `yaml:"args" json:"args"`
	Env             []envVar         `yaml:"env" json:"env"`
	Resources       *resources       `yaml:"resources" json:"resources"`
	SecurityContext *securityContext `yaml:"securityContext" json:"securityContext"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts" json:"volumeMounts"`
	Ports           []struct {
		HostPort int `yaml:"hostPort" json:"hostPort"`
	} `yaml:"ports" json:"ports"`
	LivenessProbe  *hostField `yaml:"livenessProbe" json:"livenessProbe"`
	ReadinessProbe *hostField `yaml:"readinessProbe" json:"readinessProbe"`
	StartupProbe   *hostField `yaml:"startupProbe" json:"startupProbe"`
	Lifecycle      *struct {
		PostStart *hostField `yaml:"postStart" json:"postStart"`
		PreStop   *hostField `yaml:"preStop" json:"preStop"`
	} `yaml:"lifecycle" json:"lifecycle"`
}

// podSpec is the part of a Pod the profiles speak of.
type podSpec struct {
	Annotations     map[string]string `yaml:"-" json:"-"`
	HostNetwork     bool              `yaml:"hostNetwork" json:"hostNetwork"`
	HostPID         bool              `yaml:"hostPID" json:"hostPID"`
	HostIPC         bool              `yaml:"hostIPC" json:"hostIPC"`
	SecurityContext *securityContext  `yaml:"securityContext" json:"securityContext"`
	InitContainers  []container       `yaml:"initContainers" json:"initContainers"`
	Containers      []container       `yaml:"containers" json:"containers"`
	Volumes         []map[string]any  `yaml:"volumes" json:"volumes"`
	// ActiveDeadlineSeconds bounds the pod's run (hardening, not a control).
	ActiveDeadlineSeconds int64 `yaml:"activeDeadlineSeconds" json:"activeDeadlineSeconds"`
}

// Allowed values, from the page.
var (
	baselineCapabilities = []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
		"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
	safeSysctls = []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
		"net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
	seLinuxTypes      = []string{"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
	restrictedVolumes = []string{"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)

// restrictedViolations returns every way p breaks the Baseline or the
// Restricted profile, one line per field, naming the control.
func restrictedViolations(p podSpec) []string {
	var out []string
	bad := func(control, field, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s: %s", control, field, fmt.Sprintf(format, args...)))
	}
	pod := p.SecurityContext
	if pod == nil {
		pod = &securityContext{}
	}
	type ctr struct {
		field string
		c     container
	}
	var all []ctr
	for _, c := range p.InitContainers {
		all = append(all, ctr{"spec.initContainers[" + c.Name + "]", c})
	}
	for _, c := range p.Containers {
		all = append(all, ctr{"spec.containers[" + c.Name + "]", c})
	}

	// --- Baseline ---
	if w := pod.WindowsOptions; w != nil && w.HostProcess != nil && *w.HostProcess {
		bad("HostProcess", "spec.securityContext.windowsOptions.hostProcess", "true")
	}
	if p.HostNetwork || p.HostPID || p.HostIPC {
		bad("Host Namespaces", "spec.hostNetwork/hostPID/hostIPC", "want false")
	}
	for _, v := range p.Volumes {
		if _, ok := v["hostPath"]; ok {
			bad("HostPath Volumes", fmt.Sprintf("spec.volumes[%v].hostPath", v["name"]), "want undefined")
		}
	}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, "container.apparmor.security.beta.kubernetes.io/") && v != "runtime/default" && !strings.HasPrefix(v, "localhost/") {
			bad("AppArmor", "metadata.annotations["+k+"]", "%q", v)
		}
	}
	checkCommon := func(field string, sc *securityContext) {
		if sc == nil {
			return
		}
		if a := sc.AppArmorProfile; a != nil && a.Type != "RuntimeDefault" && a.Type != "Localhost" {
			bad("AppArmor", field+".appArmorProfile.type", "%q", a.Type)
		}
		if se := sc.SELinuxOptions; se != nil {
			if !slices.Contains(seLinuxTypes, se.Type) {
				bad("SELinux", field+".seLinuxOptions.type", "%q", se.Type)
			}
			if se.User != "" || se.Role != "" {
				bad("SELinux", field+".seLinuxOptions.user/role", "want undefined")
			}
		}
		if s := sc.SeccompProfile; s != nil && s.Type != "RuntimeDefault" && s.Type != "Localhost" {
			bad("Seccomp", field+".seccompProfile.type", "%q, want RuntimeDefault or Localhost", s.Type)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			bad("Running as Non-root user", field+".runAsUser", "0")
		}
		if sc.RunAsGroup != nil && *sc.RunAsGroup == 0 {
			bad("Non-root groups", field+".runAsGroup", "0")
		}
	}
	checkCommon("spec.securityContext", pod)
	for _, s := range pod.Sysctls {
		if !slices.Contains(safeSysctls, s.Name) {
			bad("Sysctls", "spec.securityContext.sysctls", "%q is not in the safe set", s.Name)
		}
	}
	if pod.FSGroup != nil && *pod.FSGroup == 0 {
		bad("Non-root groups", "spec.securityContext.fsGroup", "0")
	}
	if slices.Contains(pod.SupplementalGroups, 0) {
		bad("Non-root groups", "spec.securityContext.supplementalGroups", "contains 0")
	}
	podNonRoot := pod.RunAsNonRoot != nil && *pod.RunAsNonRoot
	podSeccomp := pod.SeccompProfile != nil
	for _, c := range all {
		sc := c.c.SecurityContext
		field := c.field + ".securityContext"
		for _, port := range c.c.Ports {
			if port.HostPort != 0 {
				bad("Host Ports", c.field+".ports[*].hostPort", "%d", port.HostPort)
			}
		}
		probes := []*hostField{c.c.LivenessProbe, c.c.ReadinessProbe, c.c.StartupProbe}
		if l := c.c.Lifecycle; l != nil {
			probes = append(probes, l.PostStart, l.PreStop)
		}
		for _, pr := range probes {
			if pr != nil && ((pr.HTTPGet != nil && pr.HTTPGet.Host != "") || (pr.TCPSocket != nil && pr.TCPSocket.Host != "")) {
				bad("Host Probes / Lifecycle Hooks", c.field, "a probe or hook sets host")
			}
		}
		if sc == nil {
			sc = &securityContext{}
		}
		checkCommon(field, sc)
		if w := sc.WindowsOptions; w != nil && w.HostProcess != nil && *w.HostProcess {
			bad("HostProcess", field+".windowsOptions.hostProcess", "true")
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad("Privileged Containers", field+".privileged", "true")
		}
		if sc.ProcMount != "" && sc.ProcMount != "Default" {
			bad("/proc Mount Type", field+".procMount", "%q", sc.ProcMount)
		}
		var add, drop []string
		if sc.Capabilities != nil {
			add, drop = sc.Capabilities.Add, sc.Capabilities.Drop
		}
		for _, a := range add {
			if !slices.Contains(baselineCapabilities, a) {
				bad("Capabilities (baseline)", field+".capabilities.add", "%q", a)
			}
		}

		// --- Restricted ---
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("Privilege Escalation", field+".allowPrivilegeEscalation", "want false")
		}
		switch {
		case sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
			bad("Running as Non-root", field+".runAsNonRoot", "false")
		case sc.RunAsNonRoot == nil && !podNonRoot:
			bad("Running as Non-root", field+".runAsNonRoot", "undefined, and spec.securityContext.runAsNonRoot is not true")
		}
		if sc.SeccompProfile == nil && !podSeccomp {
			bad("Seccomp", field+".seccompProfile.type", "undefined, and spec.securityContext.seccompProfile is not set")
		}
		if !slices.Contains(drop, "ALL") {
			bad("Capabilities", field+".capabilities.drop", "%q does not include ALL", drop)
		}
		for _, a := range add {
			if a != "NET_BIND_SERVICE" {
				bad("Capabilities", field+".capabilities.add", "%q, only NET_BIND_SERVICE is allowed", a)
			}
		}
	}
	for _, v := range p.Volumes {
		ok := false
		for _, k := range restrictedVolumes {
			if v[k] != nil {
				ok = true
			}
		}
		if !ok {
			bad("Volume Types", fmt.Sprintf("spec.volumes[%v]", v["name"]), "none of %v", restrictedVolumes)
		}
	}
	return out
}

// hardeningViolations returns what strata asks of its own containers
// beyond the profile: a read-only root file system with writable paths
// only on volumes, CPU and memory requests and limits, and OpenBLAS and Go
// sized by the CPU limit (OpenBLAS otherwise starts a thread per core of
// the node).
func hardeningViolations(c container, wantThreads bool) []string {
	var out []string
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		out = append(out, c.Name+": securityContext.readOnlyRootFilesystem: want true")
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[m.MountPath] = true
	}
	if !mounted["/tmp"] {
		out = append(out, c.Name+": no volume at /tmp (the root file system is read-only)")
	}
	r := c.Resources
	for _, res := range []string{"cpu", "memory"} {
		if r == nil || r.Requests[res] == "" || r.Limits[res] == "" {
			out = append(out, c.Name+": resources: want requests and limits of "+res)
		}
	}
	if !wantThreads {
		return out
	}
	for _, name := range []string{"OPENBLAS_NUM_THREADS", "GOMAXPROCS"} {
		i := slices.IndexFunc(c.Env, func(e envVar) bool { return e.Name == name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil ||
			c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.cpu" {
			out = append(out, c.Name+": env "+name+": want valueFrom.resourceFieldRef limits.cpu")
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// TestRestrictedProfileCatches: the checker fails each control it checks;
// a pod that breaks nothing passes.
func TestRestrictedProfileCatches(t *testing.T) {
	good := func() podSpec {
		return podSpec{
			SecurityContext: &securityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65532)),
				SeccompProfile: &profileType{Type: "RuntimeDefault"}},
			Containers: []container{{Name: "main", SecurityContext: &securityContext{
				AllowPrivilegeEscalation: ptr(false), Capabilities: &capabilities{Drop: []string{"ALL"}}}}},
			Volumes: []map[string]any{{"name": "tmp", "emptyDir": map[string]any{}}},
		}
	}
	if v := restrictedViolations(good()); len(v) != 0 {
		t.Fatalf("a restricted pod fails: %v", v)
	}
	tests := []struct {
		control string
		mutate  func(*podSpec)
	}{
		{"Host Namespaces", func(p *podSpec) { p.HostPID = true }},
		{"Privileged Containers", func(p *podSpec) { p.Containers[0].SecurityContext.Privileged = ptr(true) }},
		{"Capabilities", func(p *podSpec) { p.Containers[0].SecurityContext.Capabilities.Add = []string{"SYS_ADMIN"} }},
		{"Capabilities", func(p *podSpec) { p.Containers[0].SecurityContext.Capabilities.Drop = nil }},
		{"HostPath Volumes", func(p *podSpec) { p.Volumes[0] = map[string]any{"name": "h", "hostPath": map[string]any{}} }},
		{"Volume Types", func(p *podSpec) { p.Volumes[0] = map[string]any{"name": "n", "nfs": map[string]any{}} }},
		{"Privilege Escalation", func(p *podSpec) { p.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil }},
		{"Running as Non-root", func(p *podSpec) { p.SecurityContext.RunAsNonRoot = nil }},
		{"Running as Non-root user", func(p *podSpec) { p.Containers[0].SecurityContext.RunAsUser = ptr(int64(0)) }},
		{"Seccomp", func(p *podSpec) { p.SecurityContext.SeccompProfile = nil }},
		{"Seccomp", func(p *podSpec) { p.SecurityContext.SeccompProfile.Type = "Unconfined" }},
		{"Sysctls", func(p *podSpec) {
			p.SecurityContext.Sysctls = []struct {
				Name string `yaml:"name" json:"name"`
			}{{"kernel.msgmax"}}
		}},
		{"/proc Mount Type", func(p *podSpec) { p.Containers[0].SecurityContext.ProcMount = "Unmasked" }},
		{"Host Ports", func(p *podSpec) {
			p.Containers[0].Ports = []struct {
				HostPort int `yaml:"hostPort" json:"hostPort"`
			}{{HostPort: 80}}
		}},
		{"Running as Non-root", func(p *podSpec) {
			p.InitContainers = []container{{Name: "init", SecurityContext: &securityContext{RunAsNonRoot: ptr(false),
				AllowPrivilegeEscalation: ptr(false), Capabilities: &capabilities{Drop: []string{"ALL"}}}}}
		}},
	}
	for _, tt := range tests {
		p := good()
		tt.mutate(&p)
		v := restrictedViolations(p)
		if !slices.ContainsFunc(v, func(s string) bool { return strings.HasPrefix(s, tt.control+":") }) {
			t.Errorf("%s: not caught (violations %q)", tt.control, v)
		}
	}
}
