package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of the *.yaml files of this directory, decoded
// strictly (an unknown or duplicate field is an error) into the Kubernetes
// API types of their kind.
type manifests struct {
	namespace      *corev1.Namespace
	serviceAccount *corev1.ServiceAccount
	service        *corev1.Service
	daemonSet      *appsv1.DaemonSet
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests here (%v)", err)
	}
	var m manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s, document %d", f, i+1)
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				m.namespace = new(corev1.Namespace)
				obj = m.namespace
			case "v1 ServiceAccount":
				m.serviceAccount = new(corev1.ServiceAccount)
				obj = m.serviceAccount
			case "v1 Service":
				m.service = new(corev1.Service)
				obj = m.service
			case "apps/v1 DaemonSet":
				m.daemonSet = new(appsv1.DaemonSet)
				obj = m.daemonSet
			default:
				t.Fatalf("%s: %s %s, which this test does not know: add it", where, meta.APIVersion, meta.Kind)
			}
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		}
	}
	if m.namespace == nil || m.serviceAccount == nil || m.service == nil || m.daemonSet == nil {
		t.Fatalf("want a Namespace, a ServiceAccount, a Service and a DaemonSet; got %+v", m)
	}
	return m
}

// decodeStrict decodes a YAML document as the API server does in strict
// mode: a duplicate key, an unknown field or a field spelt in another case
// (encoding/json would take runAsNonroot for runAsNonRoot) is an error.
func decodeStrict(doc []byte, obj any) error {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(data, obj, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// TestStrictDecoding: a field the API does not have (a typo in
// securityContext is silently ignored by a lenient decoder) fails here.
func TestStrictDecoding(t *testing.T) {
	load(t)
	for _, field := range []string{"runAsNonroot: true", "runAsNonRut: true", "runAsNonRoot: true\n        runAsNonRoot: false"} {
		var ds appsv1.DaemonSet
		err := decodeStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      securityContext:\n        "+field+"\n"), &ds)
		if err == nil {
			t.Errorf("%q decoded", field)
		}
	}
}

// TestObjectsFitTogether: everything lives in the namespace, the Service
// selects the DaemonSet's pods and is headless, the pods run as the
// ServiceAccount, which mounts no API token, and have DNS names below the
// Service.
func TestObjectsFitTogether(t *testing.T) {
	m := load(t)
	ns := m.namespace.Name
	for what, got := range map[string]string{"ServiceAccount": m.serviceAccount.Namespace, "Service": m.service.Namespace, "DaemonSet": m.daemonSet.Namespace} {
		if got != ns {
			t.Errorf("the %s is in namespace %q, not %q", what, got, ns)
		}
	}
	if m.namespace.Labels["pod-security.kubernetes.io/warn"] != "restricted" {
		t.Errorf("namespace labels %v: want Pod Security's restricted level reported", m.namespace.Labels)
	}
	ds := m.daemonSet
	pod := ds.Spec.Template
	for k, v := range ds.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("the DaemonSet's selector %s=%s does not select its pods (%v)", k, v, pod.Labels)
		}
	}
	svc := m.service.Spec
	if svc.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the Service's clusterIP is %q, want None (headless: clients address the pod of a node)", svc.ClusterIP)
	}
	for k, v := range svc.Selector {
		if pod.Labels[k] != v {
			t.Errorf("the Service's selector %s=%s does not select the pods (%v)", k, v, pod.Labels)
		}
	}
	if pod.Spec.Subdomain != m.service.Name {
		t.Errorf("pods' subdomain %q, want the Service's name %q (their DNS names)", pod.Spec.Subdomain, m.service.Name)
	}
	c := container(t, ds)
	if len(svc.Ports) != 1 || svc.Ports[0].TargetPort.String() != c.Ports[0].Name || c.Ports[0].ContainerPort != svc.Ports[0].Port {
		t.Errorf("Service ports %+v do not lead to the container's %+v", svc.Ports, c.Ports)
	}
	if pod.Spec.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("pods run as %q, not the ServiceAccount %q", pod.Spec.ServiceAccountName, m.serviceAccount.Name)
	}
	if !isFalse(m.serviceAccount.AutomountServiceAccountToken) || !isFalse(pod.Spec.AutomountServiceAccountToken) {
		t.Error("an API token is mounted: layerbridge never talks to the Kubernetes API")
	}
}

// TestLeastPrivilege: the pod is non-root (with the socket's group), has no
// capability, cannot gain privileges, writes nowhere but its cache, runs
// under the runtime's seccomp profile, is not on the host's network, PID
// or IPC namespaces, mounts nothing of the host but containerd's socket,
// and has resource requests and limits.
func TestLeastPrivilege(t *testing.T) {
	m := load(t)
	spec := m.daemonSet.Spec.Template.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("the pod shares a host namespace: Clair reaches the pod's own IP")
	}
	psc := spec.SecurityContext
	switch {
	case psc == nil:
		t.Fatal("no pod securityContext")
	case !isTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser == 0 || psc.RunAsGroup == nil || *psc.RunAsGroup == 0:
		t.Errorf("pod runs as %v:%v (runAsNonRoot %v), want a non-root user and group", deref(psc.RunAsUser), deref(psc.RunAsGroup), psc.RunAsNonRoot)
	case !slices.Equal(psc.SupplementalGroups, []int64{0}):
		t.Errorf("supplementalGroups %v, want [0]: the group of containerd's socket (root:root, 0660) and nothing else", psc.SupplementalGroups)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp profile %+v, want RuntimeDefault", psc.SeccompProfile)
	}
	c := container(t, m.daemonSet)
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case !isTrue(sc.ReadOnlyRootFilesystem):
		t.Error("the root filesystem is writable")
	case !isFalse(sc.AllowPrivilegeEscalation):
		t.Error("privilege escalation is not turned off")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("the container is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want all dropped and none added", sc.Capabilities)
	case sc.RunAsUser != nil || sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
		t.Error("the container overrides the pod's user")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s; want both, the request at most the limit", r, req.String(), lim.String())
		}
	}
	var hostPaths []string
	for _, v := range spec.Volumes {
		switch {
		case v.HostPath != nil:
			hostPaths = append(hostPaths, v.HostPath.Path)
			if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathSocket {
				t.Errorf("hostPath %s is not of type Socket: the pod must not get a file or directory created in its place", v.HostPath.Path)
			}
		case v.EmptyDir != nil:
			if v.EmptyDir.SizeLimit == nil {
				t.Errorf("emptyDir %s has no sizeLimit", v.Name)
			}
		case v.Secret != nil:
			if mode := v.Secret.DefaultMode; mode == nil || *mode&0o002 != 0 {
				t.Errorf("secret volume %s: mode %v, want one not writable by others (serve refuses such a token file)", v.Name, mode)
			}
		default:
			t.Errorf("volume %s: only the socket, the token Secret and the cache are expected", v.Name)
		}
	}
	if !slices.Equal(hostPaths, []string{"/run/containerd/containerd.sock"}) {
		t.Errorf("host paths %q, want containerd's socket only", hostPaths)
	}
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i >= 0 && spec.Volumes[i].EmptyDir == nil && !vm.ReadOnly {
			t.Errorf("volume %s is mounted writable: only the cache is written", vm.Name)
		}
	}
}

// TestProbes: readiness is /readyz (store, containerd, Clair), liveness
// /healthz, both on the serving port; the grace period covers serve's
// shutdown grace.
func TestProbes(t *testing.T) {
	m := load(t)
	c := container(t, m.daemonSet)
	for name, tc := range map[string]struct {
		p    *corev1.Probe
		path string
	}{"readiness": {c.ReadinessProbe, "/readyz"}, "liveness": {c.LivenessProbe, "/healthz"}} {
		if tc.p == nil || tc.p.HTTPGet == nil || tc.p.HTTPGet.Path != tc.path || tc.p.HTTPGet.Port.String() != c.Ports[0].Name {
			t.Errorf("%s probe %+v, want GET %s on port %s", name, tc.p, tc.path, c.Ports[0].Name)
		}
	}
	if g := m.daemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 35 {
		t.Errorf("terminationGracePeriodSeconds %v: serve waits up to --shutdown-grace (30s) for running scans", deref(g))
	}
}

// TestFlagsAreServes: every flag the DaemonSet passes is one `layerbridge
// serve --help` documents, the binary parses them all, and the paths they
// name are where the volumes are mounted.
func TestFlagsAreServes(t *testing.T) {
	m := load(t)
	c := container(t, m.daemonSet)
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("command %q, args %q: want the image's entrypoint with serve", c.Command, c.Args)
	}
	bin := layerbridgeBin(t)
	help, err := exec.Command(bin, "serve", "--help").Output()
	if err != nil {
		t.Fatalf("serve --help: %v", err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(--[a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "--") {
			t.Errorf("argument %q: write flags as --name=value, one an argument", a)
			continue
		}
		if !known[name] {
			t.Errorf("%s is no flag of serve (serve --help lists %d)", name, len(known))
		}
		flags[name] = value
	}
	// The binary parses them: --help last answers only if every flag
	// before it parsed.
	out, err := exec.Command(bin, append(c.Args, "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("layerbridge %s --help: %v\n%s", strings.Join(c.Args, " "), err, out)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(pred func(corev1.Volume) bool) corev1.VolumeMount {
		for name, v := range volumes {
			if pred(v) {
				return mounts[name]
			}
		}
		return corev1.VolumeMount{}
	}
	sock := mountOf(func(v corev1.Volume) bool { return v.HostPath != nil })
	if flags["--containerd-address"] != sock.MountPath || sock.MountPath == "" {
		t.Errorf("--containerd-address %q, the socket is mounted at %q", flags["--containerd-address"], sock.MountPath)
	}
	if flags["--containerd-namespace"] != "k8s.io" {
		t.Errorf("--containerd-namespace %q, want k8s.io (the kubelet's images)", flags["--containerd-namespace"])
	}
	var secret corev1.Volume
	for _, v := range volumes {
		if v.Secret != nil {
			secret = v
		}
	}
	tok := mounts[secret.Name]
	if len(secret.Secret.Items) != 1 || flags["--token-file"] != tok.MountPath+"/"+secret.Secret.Items[0].Path || !tok.ReadOnly {
		t.Errorf("--token-file %q, the Secret is mounted read-only at %q with items %+v", flags["--token-file"], tok.MountPath, secret.Secret.Items)
	}
	cache := mountOf(func(v corev1.Volume) bool { return v.EmptyDir != nil })
	if flags["--cache-dir"] != cache.MountPath || cache.MountPath == "" {
		t.Errorf("--cache-dir %q, the cache is mounted at %q", flags["--cache-dir"], cache.MountPath)
	}
	if !strings.Contains(flags["--advertise"], "$(POD_IP)") {
		t.Errorf("--advertise %q: Clair reaches the pod at its IP", flags["--advertise"])
	}
	if i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_IP" }); i < 0 ||
		c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Error("POD_IP is not the pod's IP (status.podIP)")
	}
	if c.Image != "layerbridge:latest" {
		t.Errorf("image %q, want layerbridge:latest as `make image` tags it", c.Image)
	}
}

func container(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(ds.Spec.Template.Spec.InitContainers) != 0 || len(cs[0].Ports) != 1 {
		t.Fatalf("want one container with one port, no init container")
	}
	return cs[0]
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// layerbridgeBin is the binary the manifests run: $LAYERBRIDGE_BIN (make
// test sets it), else one built from this checkout.
func layerbridgeBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LAYERBRIDGE_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "layerbridge-k8s-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "layerbridge")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/layerbridge")
		cmd.Dir = "../.."
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/layerbridge: %v\n%s", err, stderr.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}
