package chart

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// variants are the value sets the chart is rendered and applied with, keyed by what must
// hold for each. check runs on the rendered objects.
var variants = map[string]struct {
	values map[string]any
	check  func(t *testing.T, r *rendered)
}{
	"the default values render operator and relays, and no ServiceMonitor or HPA": {
		values: nil,
		check: func(t *testing.T, r *rendered) {
			for _, kind := range []string{"ServiceMonitor", "HorizontalPodAutoscaler"} {
				if r.has(kind) {
					t.Errorf("a %s is rendered by default", kind)
				}
			}
			sts := r.find(t, "StatefulSet", "postwarden-relay")
			if got := nested[int64](t, sts, "spec", "replicas"); got != 2 {
				t.Errorf("relay replicas = %d, want 2", got)
			}
			claims := nested[[]any](t, sts, "spec", "volumeClaimTemplates")
			if len(claims) != 1 || mustMap(claims[0])["metadata"].(map[string]any)["name"] != "spool" {
				t.Errorf("volumeClaimTemplates = %v, want one named spool", claims)
			}
			if got := nested[string](t, sts, "spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"); got != "Retain" {
				t.Errorf("whenScaled = %q, want Retain: scaling down must not delete queued mail", got)
			}
			relay := container(t, sts, "relay")
			if got := flagValue(t, relay, "--spool-dir"); !slices.ContainsFunc(nestedIn[[]any](relay, "volumeMounts"), func(m any) bool {
				return mustMap(m)["name"] == "spool" && mustMap(m)["mountPath"] == got
			}) {
				t.Errorf("the spool volume is not mounted at --spool-dir %s", got)
			}
			if slices.ContainsFunc(strSlice(relay["args"]), func(a string) bool { return strings.Contains(a, "proxy") }) {
				t.Errorf("PROXY protocol flags without relay.proxyProtocol.enabled: %v", relay["args"])
			}
			if slices.ContainsFunc(strSlice(relay["args"]), func(a string) bool { return strings.HasPrefix(a, "--outbound-allowed-networks") }) {
				t.Errorf("--outbound-allowed-networks without relay.outboundAllowedNetworks: %v", relay["args"])
			}
			if v, ok := nested[map[string]any](t, sts, "spec", "template", "spec")["volumes"]; ok {
				t.Errorf("volumes is rendered as %v with a claimed spool and no TLS Secret", v)
			}
			if _, ok := relay["lifecycle"]; ok {
				t.Error("a preStop hook is rendered though preStopSleepSeconds is 0")
			}
			for _, want := range []string{"kind: MailDomain", "kind: SMTPCredential", "get secret my-app-smtp", "WARNING: no certificate"} {
				if !strings.Contains(r.Notes, want) {
					t.Errorf("NOTES.txt does not say %q", want)
				}
			}
		},
	},
	"an emptyDir spool renders no volume claims": {
		values: values(`relay: {spool: {type: emptyDir, emptyDir: {sizeLimit: 2Gi}}}`),
		check: func(t *testing.T, r *rendered) {
			sts := r.find(t, "StatefulSet", "postwarden-relay")
			for _, field := range []string{"volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"} {
				if _, ok := sts.Object["spec"].(map[string]any)[field]; ok {
					t.Errorf("spec.%s is rendered with an emptyDir spool", field)
				}
			}
			volumes := nested[[]any](t, sts, "spec", "template", "spec", "volumes")
			if !slices.ContainsFunc(volumes, func(v any) bool {
				ed, _ := mustMap(v)["emptyDir"].(map[string]any)
				return mustMap(v)["name"] == "spool" && ed["sizeLimit"] == "2Gi"
			}) {
				t.Errorf("no emptyDir volume named spool of 2Gi in %v", volumes)
			}
		},
	},
	"the PROXY protocol turns on both listeners' flags with the trusted CIDRs, and allows traffic policy Cluster": {
		values: values(`relay: {service: {externalTrafficPolicy: Cluster}, proxyProtocol: {enabled: true, trustedCIDRs: [10.0.0.0/8, 192.0.2.7], headerTimeout: 3s}}`),
		check: func(t *testing.T, r *rendered) {
			relay := container(t, r.find(t, "StatefulSet", "postwarden-relay"), "relay")
			args := strSlice(relay["args"])
			for _, want := range []string{"--submission-proxy-protocol", "--inbound-proxy-protocol", "--trusted-proxies=10.0.0.0/8,192.0.2.7", "--proxy-header-timeout=3s"} {
				if !slices.Contains(args, want) {
					t.Errorf("relay args lack %s: %v", want, args)
				}
			}
			svc := r.find(t, "Service", "postwarden-relay")
			if got := nested[string](t, svc, "spec", "externalTrafficPolicy"); got != "Cluster" {
				t.Errorf("externalTrafficPolicy = %q, want Cluster", got)
			}
		},
	},
	"autoscaling renders an HPA for the StatefulSet, which then leaves replicas to it": {
		values: values(`relay: {autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 9, targetMemoryUtilizationPercentage: 80}}`),
		check: func(t *testing.T, r *rendered) {
			hpa := r.find(t, "HorizontalPodAutoscaler", "postwarden-relay")
			if kind, name := nested[string](t, hpa, "spec", "scaleTargetRef", "kind"), nested[string](t, hpa, "spec", "scaleTargetRef", "name"); kind != "StatefulSet" || name != "postwarden-relay" {
				t.Errorf("the HPA scales %s/%s, want StatefulSet/postwarden-relay", kind, name)
			}
			if got := len(nested[[]any](t, hpa, "spec", "metrics")); got != 2 {
				t.Errorf("the HPA has %d metrics, want cpu and memory", got)
			}
			sts := r.find(t, "StatefulSet", "postwarden-relay")
			if _, ok := sts.Object["spec"].(map[string]any)["replicas"]; ok {
				t.Error("the StatefulSet sets replicas although an HPA owns them")
			}
		},
	},
	"the ServiceMonitor selects the operator's and the relays' metrics Services": {
		values: values(`serviceMonitor: {enabled: true, labels: {release: prometheus}}`),
		check: func(t *testing.T, r *rendered) {
			sm := r.find(t, "ServiceMonitor", "postwarden")
			selector := nested[map[string]any](t, sm, "spec", "selector", "matchLabels")
			port := nested[[]any](t, sm, "spec", "endpoints")[0].(map[string]any)["port"]
			var scraped []string
			for _, o := range r.Objects {
				if o.GetKind() == "Service" && matches(selector, o.GetLabels()) {
					ports := nested[[]any](t, o, "spec", "ports")
					if !slices.ContainsFunc(ports, func(p any) bool { return mustMap(p)["name"] == port }) {
						t.Errorf("Service %s is selected but has no port %v", o.GetName(), port)
					}
					scraped = append(scraped, o.GetName())
				}
			}
			slices.Sort(scraped)
			if want := []string{"postwarden-operator-metrics", "postwarden-relay-headless"}; !slices.Equal(scraped, want) {
				t.Errorf("the ServiceMonitor selects %v, want %v", scraped, want)
			}
			if sm.GetLabels()["release"] != "prometheus" {
				t.Errorf("serviceMonitor.labels not applied: %v", sm.GetLabels())
			}
		},
	},
	"every optional setting renders into flags and fields the API server accepts": {
		values: values(`
nameOverride: mail
commonLabels: {team: mail}
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: registry}]
operator:
  replicas: 1
  leaderElection: false
  configName: relay-cfg
  relayHostnames: [smtp.example.com, mx.example.com]
  submission: {host: submit.example.com}
  certificate: {name: relay-cert, issuerRef: {name: letsencrypt, kind: Issuer, group: cert-manager.io}}
  logLevel: debug
  extraArgs: [--zap-devel]
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: mail, effect: NoSchedule}]
relay:
  replicas: 3
  hostname: relay.example.com
  inbound: {enabled: false}
  service: {type: NodePort, annotations: {example.com/lb: "1"}}
  tls: {existingSecret: relay-tls}
  limits: {maxMessageBytes: 52428800, maxRecipients: 500, maxConnections: 2000, maxConnectionsPerIP: 20, commandTimeout: 2m, dataTimeout: 15m}
  shutdown: {preStopSleepSeconds: 5, drainDelaySeconds: 20, gracePeriodSeconds: 60, terminationGracePeriodSeconds: 150}
  delivery: {enabled: false, dnsServers: [10.0.0.10:53, 10.0.0.11:53], smarthost: smtp.provider.example:587, workers: 32, perDestination: 2, retryFirst: 1m, retryMax: 2h, queueLifetime: 72h, delayNotice: -1s, inflowDelay: 250ms, drainTimeoutSeconds: 45}
  outboundAllowedNetworks: [10.96.0.0/12, "fd00:10:96::/112"]
  deliveryEvents: {caBundle: {configMapName: hooks-ca, key: bundle.pem}}
  podDisruptionBudget: {maxUnavailable: 25%}
  logFormat: text
  extraEnv: [{name: GOMEMLIMIT, value: 900MiB}]
  priorityClassName: system-cluster-critical
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/component: relay}}}
`),
		check: func(t *testing.T, r *rendered) {
			op := container(t, r.find(t, "Deployment", "postwarden-mail-operator"), "operator")
			for _, want := range []string{"--config-name=relay-cfg", "--relay-hostnames=smtp.example.com,mx.example.com",
				"--submission-host=submit.example.com", "--submission-port=587", "--certificate-name=relay-cert",
				"--issuer-name=letsencrypt", "--issuer-kind=Issuer", "--issuer-group=cert-manager.io", "--zap-log-level=debug", "--zap-devel"} {
				if !slices.Contains(strSlice(op["args"]), want) {
					t.Errorf("operator args lack %s: %v", want, op["args"])
				}
			}
			if slices.Contains(strSlice(op["args"]), "--leader-elect") {
				t.Error("--leader-elect with leaderElection false")
			}
			sts := r.find(t, "StatefulSet", "postwarden-mail-relay")
			relay := container(t, sts, "relay")
			for _, want := range []string{"--kube-config-name=relay-cfg", "--hostname=relay.example.com", "--inbound-listen=",
				"--tls-cert=/etc/postwarden/tls/tls.crt", "--tls-key=/etc/postwarden/tls/tls.key",
				"--max-message-bytes=52428800", "--max-recipients=500", "--max-connections=2000", "--max-connections-per-ip=20",
				"--command-timeout=2m", "--data-timeout=15m", "--drain-delay=20s", "--grace-period=60s", "--log-format=text",
				"--delivery=false", "--dns-servers=10.0.0.10:53,10.0.0.11:53", "--smarthost=smtp.provider.example:587",
				"--delivery-workers=32", "--delivery-per-destination=2", "--retry-first=1m", "--retry-max=2h",
				"--queue-lifetime=72h", "--delay-notice=-1s", "--inflow-delay=250ms", "--delivery-drain-timeout=45s",
				"--outbound-allowed-networks=10.96.0.0/12,fd00:10:96::/112",
				"--delivery-events-ca-file=/etc/postwarden/delivery-events-ca/ca.crt"} {
				if !slices.Contains(strSlice(relay["args"]), want) {
					t.Errorf("relay args lack %s: %v", want, relay["args"])
				}
			}
			checkEventsCAMount(t, sts, relay)
			if got := nested[int64](t, sts, "spec", "template", "spec", "terminationGracePeriodSeconds"); got != 150 {
				t.Errorf("terminationGracePeriodSeconds = %d, want 150", got)
			}
			if got := nestedIn[int64](relay, "lifecycle", "preStop", "sleep", "seconds"); got != 5 {
				t.Errorf("preStop sleep = %d, want 5", got)
			}
			svc := r.find(t, "Service", "postwarden-mail-relay")
			if ports := nested[[]any](t, svc, "spec", "ports"); len(ports) != 1 || mustMap(ports[0])["port"] != int64(587) {
				t.Errorf("with inbound off the Service ports are %v, want 587 alone", ports)
			}
			if got := nested[string](t, svc, "spec", "externalTrafficPolicy"); got != "Local" {
				t.Errorf("NodePort externalTrafficPolicy = %q, want Local", got)
			}
			if strings.Contains(r.Notes, "WARNING: no certificate") {
				t.Error("NOTES.txt warns of no certificate though an issuer and a TLS Secret are set")
			}
			if !strings.Contains(nestedIn[string](relay, "image"), "@sha256:") {
				t.Errorf("image %v does not use the digest", relay["image"])
			}
		},
	},
}

// Every variant renders, passes the safety checks, and every object it renders (CRDs
// included) passes a server-side dry-run apply against a real API server.
func TestChartVariantsApply(t *testing.T) {
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t)
			r := mustRender(t, ns, v.values)
			checkSafety(t, r, ns)
			v.check(t, r)
			ctx := context.Background()
			for _, obj := range append(slices.Clone(r.CRDs), r.Objects...) {
				if err := dryRunApply(ctx, obj); err != nil {
					t.Errorf("dry-run apply of %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
}

// The operator and the relays can each be installed alone (say, relays in a second
// cluster fed by a config copied there), and render whole: bound RBAC, no stray objects.
func TestChartHalvesApplyAlone(t *testing.T) {
	cases := map[string]struct {
		values    string
		component string
	}{
		"the operator alone renders no relay objects": {values: `relay: {enabled: false}`, component: "operator"},
		"the relays alone render no operator objects": {values: `operator: {enabled: false}`, component: "relay"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t)
			r := mustRender(t, ns, values(c.values))
			if !r.has("Deployment") && !r.has("StatefulSet") {
				t.Fatalf("rendered no workload: %v", r.names())
			}
			for _, o := range r.Objects {
				if got := o.GetLabels()["app.kubernetes.io/component"]; got != c.component {
					t.Errorf("%s %s belongs to %q, want only %s objects", o.GetKind(), o.GetName(), got, c.component)
				}
			}
			checkRBAC(t, r)
			for _, obj := range r.Objects {
				if err := dryRunApply(context.Background(), obj); err != nil {
					t.Errorf("dry-run apply of %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
}

// checkEventsCAMount checks that the delivery events CA bundle is the one key of its
// ConfigMap, mounted read-only where --delivery-events-ca-file points.
func checkEventsCAMount(t *testing.T, sts *unstructured.Unstructured, relay map[string]any) {
	t.Helper()
	var mounted bool
	for _, m := range nestedIn[[]any](relay, "volumeMounts") {
		if m := mustMap(m); m["name"] == "delivery-events-ca" {
			mounted = m["mountPath"] == "/etc/postwarden/delivery-events-ca" && m["readOnly"] == true
		}
	}
	if !mounted {
		t.Errorf("the delivery events CA bundle is not mounted read-only at /etc/postwarden/delivery-events-ca: %v", relay["volumeMounts"])
	}
	for _, v := range nested[[]any](t, sts, "spec", "template", "spec", "volumes") {
		if v := mustMap(v); v["name"] == "delivery-events-ca" {
			items := nestedIn[[]any](v, "configMap", "items")
			if nestedIn[string](v, "configMap", "name") != "hooks-ca" || len(items) != 1 ||
				mustMap(items[0])["key"] != "bundle.pem" || mustMap(items[0])["path"] != "ca.crt" {
				t.Errorf("delivery events CA volume %v, want key bundle.pem of ConfigMap hooks-ca alone, as ca.crt", v)
			}
			return
		}
	}
	t.Error("no delivery-events-ca volume")
}

// values parses a YAML document of values, as helm reads a values file.
func values(doc string) map[string]any {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		panic(err)
	}
	return m
}

// matches reports whether a label selector's matchLabels select labels.
func matches(selector map[string]any, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func mustMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// nested returns the field at path, or fails the test when it is missing or of another type.
func nested[T any](t *testing.T, obj *unstructured.Unstructured, path ...string) T {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	got, ok := v.(T)
	if err != nil || !found || !ok {
		var zero T
		t.Fatalf("%s %s: .%s is %T %v, want a %T", obj.GetKind(), obj.GetName(), strings.Join(path, "."), v, v, zero)
	}
	return got
}

// nestedIn returns the field at path in m, or the zero value.
func nestedIn[T any](m map[string]any, path ...string) T {
	v, _, _ := unstructured.NestedFieldNoCopy(m, path...)
	got, _ := v.(T)
	return got
}

func strSlice(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, _ := item.(string)
		out = append(out, s)
	}
	return out
}
