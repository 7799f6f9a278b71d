package chart

import (
	"context"
	"errors"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/postwarden/postwarden/relay"
)

// checkSafety checks what must hold for every rendering: listeners and ports line up,
// pods run non-root and locked down, the relay has no cluster-wide access, RBAC is
// bound, selectors select, and operator and relay agree on the config Secrets.
func checkSafety(t *testing.T, r *rendered, ns string) {
	t.Helper()
	for _, o := range r.Objects {
		if namespaced(o.GetKind()) && o.GetNamespace() != ns {
			t.Errorf("%s %s is in namespace %q, want the release namespace %q", o.GetKind(), o.GetName(), o.GetNamespace(), ns)
		}
	}
	checkPodSecurity(t, r)
	checkRBAC(t, r)
	checkSelectors(t, r)

	sts := workload(r, "StatefulSet")
	deploy := workload(r, "Deployment")
	if sts == nil || deploy == nil {
		t.Fatalf("want the operator Deployment and the relay StatefulSet, have %v", r.names())
	}
	op, relayC := container(t, deploy, "operator"), container(t, sts, "relay")
	opts := operatorOptions(t, op)
	checkRelayFlags(t, strSlice(relayC["args"]))

	if got := flagValue(t, relayC, "--kube-config-name"); got != opts.ConfigName {
		t.Errorf("the relays read config %q, the operator writes %q", got, opts.ConfigName)
	}
	// Both in the release namespace, which they learn from the downward API.
	for _, c := range []struct {
		name, namespace string
		container       map[string]any
	}{{"operator", opts.Namespace, op}, {"relay", flagValue(t, relayC, "--namespace"), relayC}} {
		from := downward(c.container, "POD_NAMESPACE")
		if c.namespace != "$(POD_NAMESPACE)" || from != "metadata.namespace" {
			t.Errorf("%s: --namespace=%s with POD_NAMESPACE from %q, want the pod's namespace from the downward API", c.name, c.namespace, from)
		}
	}
	if got := flagValue(t, relayC, "--pod-name"); got != "$(POD_NAME)" || downward(relayC, "POD_NAME") != "metadata.name" {
		t.Errorf("relay --pod-name=%s with POD_NAME from %q, want the pod name from the downward API", got, downward(relayC, "POD_NAME"))
	}

	checkRelayPorts(t, r, sts, relayC)
	if port := servicePort(t, r.find(t, "Service", sts.GetName()), "submission"); port != 0 && int64(opts.SubmissionPort) != port {
		t.Errorf("credential Secrets name port %d, but the relay Service serves submission on %d", opts.SubmissionPort, port)
	}

	// Probes: /healthz and /readyz on the port --http-listen serves.
	httpPort := containerPort(relayC, "http")
	if got := flagValue(t, relayC, "--http-listen"); got != ":"+strconv.FormatInt(httpPort, 10) {
		t.Errorf("relay --http-listen=%s, but its http port is %d", got, httpPort)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if p, port := nestedIn[string](relayC, probe, "httpGet", "path"), nestedIn[string](relayC, probe, "httpGet", "port"); p != path || port != "http" {
			t.Errorf("relay %s is GET %s on %q, want %s on http", probe, p, port, path)
		}
	}

	// Drain: the kubelet must not kill a relay before its drain, its sessions' grace period
	// and its deliveries' drain have run, one after the other.
	drain := duration(t, flagValue(t, relayC, "--drain-delay"))
	grace := duration(t, flagValue(t, relayC, "--grace-period"))
	deliveries := duration(t, flagValue(t, relayC, "--delivery-drain-timeout"))
	preStop := time.Duration(nestedIn[int64](relayC, "lifecycle", "preStop", "sleep", "seconds")) * time.Second
	termination := time.Duration(nested[int64](t, sts, "spec", "template", "spec", "terminationGracePeriodSeconds")) * time.Second
	if drain <= 0 || termination < preStop+drain+grace+deliveries {
		t.Errorf("terminationGracePeriodSeconds %v, preStop %v, drain delay %v, grace period %v, delivery drain %v: the relay is killed before it drains",
			termination, preStop, drain, grace, deliveries)
	}
}

// checkRelayPorts checks that the Service maps 587 and 25 to the container ports the
// relay listens on, that those are unprivileged, and that outside traffic keeps its
// client address: externalTrafficPolicy Local, or the PROXY protocol on every listener.
func checkRelayPorts(t *testing.T, r *rendered, sts *unstructured.Unstructured, c map[string]any) {
	t.Helper()
	svc := r.find(t, "Service", sts.GetName()) // the LoadBalancer Service shares the StatefulSet's name
	listeners := map[string]struct{ servicePort int64 }{"submission": {587}, "inbound": {25}}
	args := strSlice(c["args"])
	for name, l := range listeners {
		listen := flagValue(t, c, "--"+name+"-listen")
		cport := containerPort(c, name)
		var sport *map[string]any
		for _, p := range nested[[]any](t, svc, "spec", "ports") {
			if m := mustMap(p); m["targetPort"] == name {
				sport = &m
			}
		}
		if listen == "" {
			if sport != nil || cport != 0 {
				t.Errorf("%s is disabled but still exposed", name)
			}
			continue
		}
		if cport < 1024 || listen != ":"+strconv.FormatInt(cport, 10) {
			t.Errorf("%s: --%s-listen=%s with container port %d, want an unprivileged port that matches", name, name, listen, cport)
		}
		if sport == nil || (*sport)["port"] != l.servicePort {
			t.Errorf("%s: the Service does not expose port %d to it: %v", name, l.servicePort, svc.Object["spec"])
		}
		typ := nested[string](t, svc, "spec", "type")
		policy, _ := svc.Object["spec"].(map[string]any)["externalTrafficPolicy"].(string)
		external := typ == "LoadBalancer" || typ == "NodePort"
		if external && policy != "Local" && !slices.Contains(args, "--"+name+"-proxy-protocol") {
			t.Errorf("%s: a %s Service with externalTrafficPolicy %q and no PROXY protocol hides client addresses", name, typ, policy)
		}
	}
}

// checkPodSecurity checks every pod template: non-root, seccomp RuntimeDefault, read-only
// root filesystem, no privilege escalation, every capability dropped.
func checkPodSecurity(t *testing.T, r *rendered) {
	t.Helper()
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		w := workload(r, kind)
		if w == nil {
			continue
		}
		pod := nested[map[string]any](t, w, "spec", "template", "spec")
		if nestedIn[bool](pod, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", kind)
		}
		if got := nestedIn[string](pod, "securityContext", "seccompProfile", "type"); got != "RuntimeDefault" {
			t.Errorf("%s: pod seccompProfile %q, want RuntimeDefault", kind, got)
		}
		for _, c := range nestedIn[[]any](pod, "containers") {
			c := mustMap(c)
			sc := nestedIn[map[string]any](c, "securityContext")
			if nestedIn[bool](sc, "readOnlyRootFilesystem") != true || nestedIn[bool](sc, "allowPrivilegeEscalation") != false ||
				nestedIn[bool](sc, "privileged") {
				t.Errorf("%s container %s: securityContext %v, want a read-only root and no privilege escalation", kind, c["name"], sc)
			}
			if _, set := sc["allowPrivilegeEscalation"]; !set {
				t.Errorf("%s container %s: allowPrivilegeEscalation is not set to false", kind, c["name"])
			}
			if drop := strSlice(nestedIn[[]any](sc, "capabilities", "drop")); !slices.Contains(drop, "ALL") || len(nestedIn[[]any](sc, "capabilities", "add")) > 0 {
				t.Errorf("%s container %s: capabilities %v, want ALL dropped and none added", kind, c["name"], sc["capabilities"])
			}
			uid, ok := sc["runAsUser"].(int64)
			if !ok {
				uid, ok = nestedIn[map[string]any](pod, "securityContext")["runAsUser"].(int64)
			}
			if !ok || uid == 0 {
				t.Errorf("%s container %s: runs as uid %d (set: %v), want a non-root uid", kind, c["name"], uid, ok)
			}
		}
	}
}

// checkRBAC checks that every role is bound and every binding's role exists, that the
// relay's account has no cluster-wide binding, and that its rules stay within reading
// Secrets and writing its status Lease.
func checkRBAC(t *testing.T, r *rendered) {
	t.Helper()
	roles := map[string]*unstructured.Unstructured{}
	for _, o := range r.Objects {
		if o.GetKind() == "Role" || o.GetKind() == "ClusterRole" {
			roles[o.GetKind()+"/"+o.GetName()] = o
		}
	}
	bound := map[string]bool{}
	relaySA := ""
	if sts := workload(r, "StatefulSet"); sts != nil {
		relaySA = nested[string](t, sts, "spec", "template", "spec", "serviceAccountName")
	}
	for _, b := range r.Objects {
		if b.GetKind() != "RoleBinding" && b.GetKind() != "ClusterRoleBinding" {
			continue
		}
		ref := nested[string](t, b, "roleRef", "kind") + "/" + nested[string](t, b, "roleRef", "name")
		role, ok := roles[ref]
		if !ok {
			t.Errorf("%s %s binds %s, which is not rendered", b.GetKind(), b.GetName(), ref)
			continue
		}
		bound[ref] = true
		for _, s := range nested[[]any](t, b, "subjects") {
			s := mustMap(s)
			if s["kind"] != "ServiceAccount" || relaySA == "" || s["name"] != relaySA {
				continue
			}
			if b.GetKind() == "ClusterRoleBinding" || role.GetKind() == "ClusterRole" {
				t.Errorf("the relay's ServiceAccount is bound to %s by %s %s: it must have nothing cluster-wide", ref, b.GetKind(), b.GetName())
			}
			checkRelayRules(t, role)
		}
	}
	for ref := range roles {
		if !bound[ref] {
			t.Errorf("%s is rendered but bound to nobody", ref)
		}
	}
}

// relayAllowed is everything the relay may do: read Secrets, keep its status Lease and
// its discovery observations.
var relayAllowed = map[string][]string{
	"/secrets":                   {"get", "list", "watch"},
	"coordination.k8s.io/leases": {"get", "create", "update"},
	"/configmaps":                {"get", "create", "update"},
}

func checkRelayRules(t *testing.T, role *unstructured.Unstructured) {
	t.Helper()
	for _, rule := range nested[[]any](t, role, "rules") {
		rule := mustMap(rule)
		for _, g := range strSlice(rule["apiGroups"]) {
			for _, res := range strSlice(rule["resources"]) {
				allowed := relayAllowed[g+"/"+res]
				for _, verb := range strSlice(rule["verbs"]) {
					if !slices.Contains(allowed, verb) {
						t.Errorf("the relay's %s %s allows %s on %q/%s", role.GetKind(), role.GetName(), verb, g, res)
					}
				}
			}
		}
	}
}

// checkSelectors checks that each Service and PodDisruptionBudget selects a workload's
// pods, and that the StatefulSet's governing Service is a rendered headless Service.
func checkSelectors(t *testing.T, r *rendered) {
	t.Helper()
	var podLabels []map[string]string
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		if w := workload(r, kind); w != nil {
			labels := map[string]string{}
			for k, v := range nested[map[string]any](t, w, "spec", "template", "metadata", "labels") {
				labels[k], _ = v.(string)
			}
			if !matches(nested[map[string]any](t, w, "spec", "selector", "matchLabels"), labels) {
				t.Errorf("%s %s: its selector does not match its pod labels", kind, w.GetName())
			}
			podLabels = append(podLabels, labels)
		}
	}
	for _, o := range r.Objects {
		var selector map[string]any
		switch o.GetKind() {
		case "Service":
			selector = nested[map[string]any](t, o, "spec", "selector")
		case "PodDisruptionBudget":
			selector = nested[map[string]any](t, o, "spec", "selector", "matchLabels")
		default:
			continue
		}
		if !slices.ContainsFunc(podLabels, func(l map[string]string) bool { return matches(selector, l) }) {
			t.Errorf("%s %s selects no rendered pods: %v", o.GetKind(), o.GetName(), selector)
		}
	}
	sts := workload(r, "StatefulSet")
	headless := r.find(t, "Service", nested[string](t, sts, "spec", "serviceName"))
	if got := nested[string](t, headless, "spec", "clusterIP"); got != "None" {
		t.Errorf("the StatefulSet's service %s has clusterIP %q, want None", headless.GetName(), got)
	}
}

var stderrMu sync.Mutex

// checkRelayFlags has `postwarden relay` parse its arguments followed by -h: the relay
// answers flag.ErrHelp only when every flag before it is defined and its value valid.
func checkRelayFlags(t *testing.T, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "relay" {
		t.Fatalf("relay args %v do not start with the relay subcommand", args)
	}
	stderrMu.Lock()
	defer stderrMu.Unlock()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	saved := os.Stderr
	os.Stderr = devnull // the usage text
	err = relay.RunCommand(context.Background(), append(slices.Clone(args[1:]), "-h"))
	os.Stderr = saved
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("the relay refuses its arguments %v: %v", args, err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// workload returns the rendered object of that kind, or nil.
func workload(r *rendered, kind string) *unstructured.Unstructured {
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// container returns the named container of a workload.
func container(t *testing.T, w *unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	for _, c := range nested[[]any](t, w, "spec", "template", "spec", "containers") {
		if mustMap(c)["name"] == name {
			return mustMap(c)
		}
	}
	t.Fatalf("%s %s has no container %s", w.GetKind(), w.GetName(), name)
	return nil
}

// flagValue returns the value of --name=value in the container's args, failing the
// test when the flag is absent.
func flagValue(t *testing.T, c map[string]any, name string) string {
	t.Helper()
	for _, a := range strSlice(c["args"]) {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	t.Fatalf("container %s has no %s=: %v", c["name"], name, c["args"])
	return ""
}

// servicePort returns the port of a Service that targets the named container port, or 0.
func servicePort(t *testing.T, svc *unstructured.Unstructured, target string) int64 {
	t.Helper()
	for _, p := range nested[[]any](t, svc, "spec", "ports") {
		if mustMap(p)["targetPort"] == target {
			n, _ := mustMap(p)["port"].(int64)
			return n
		}
	}
	return 0
}

// containerPort returns the number of the named port, or 0.
func containerPort(c map[string]any, name string) int64 {
	for _, p := range nestedIn[[]any](c, "ports") {
		if mustMap(p)["name"] == name {
			n, _ := mustMap(p)["containerPort"].(int64)
			return n
		}
	}
	return 0
}

// downward returns the fieldPath an env var takes from the downward API, or "".
func downward(c map[string]any, name string) string {
	for _, e := range nestedIn[[]any](c, "env") {
		if mustMap(e)["name"] == name {
			return nestedIn[string](mustMap(e), "valueFrom", "fieldRef", "fieldPath")
		}
	}
	return ""
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("parsing duration %q: %v", s, err)
	}
	return d
}

// namespaced reports whether objects of kind live in a namespace.
func namespaced(kind string) bool {
	switch kind {
	case "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace":
		return false
	}
	return true
}
