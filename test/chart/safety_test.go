package chart

import (
	"context"
	"errors"
	"flag"
	"os"
	"slices"
	"strconv"
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
