//go:build cluster

package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"

	"github.com/postwarden/postwarden/test/testenv"
)

const (
	release   = "pw"
	namespace = "postwarden-system"
	// relayName is the relay's DNS name on its certificate; clients verify it.
	relayName = "relay.postwarden.test"
	// sinkIP is the mail destination's fixed Service address: the smarthost, and the
	// sample domain's own server. The cluster has no DNS server.
	sinkIP       = "198.19.0.25"
	sinkHTTPPort = 30080
	nodeIP       = "198.18.0.2"
	spoolClass   = "postwarden-spool"

	// sinkEventsPort is the sink's HTTPS delivery events receiver, at sinkIP; its
	// certificate names sinkIP and chains to the events CA (installSink).
	sinkEventsPort = 8443
	// eventsCASecret holds the events CA's certificate in the release namespace, for
	// the chart's relay.deliveryEvents.caBundle.
	eventsCASecret = "delivery-events-ca"
)

// kube runs kubectl against the cluster with stdin and returns its output.
func kube(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := kubeErr(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func kubeErr(stdin string, args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", filepath.Join(dir, "kubeconfig")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// eventually retries f every interval until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

// testCA is the CA that cert-manager's CA ClusterIssuer signs the relay's certificate with.
type testCA struct {
	certPEM, keyPEM []byte
	file            string // certPEM on disk, for swaks and smtplib
	pool            *x509.CertPool
}

func newTestCA(t testing.TB) testCA {
	t.Helper()
	return newCA(t, "postwarden cluster test CA", "test-ca.crt")
}

// newCA makes a CA named commonName, its certificate also written to file in dir.
func newCA(t testing.TB, commonName, file string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		file:    filepath.Join(dir, file),
		pool:    x509.NewCertPool(),
	}
	ca.pool.AppendCertsFromPEM(ca.certPEM)
	if err := os.WriteFile(ca.file, ca.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// installCertManager installs cert-manager's CRDs and its controllers (hack/certmanager,
// built into an image) and a CA ClusterIssuer named test-ca.
func installCertManager(t testing.TB, ca testCA) {
	t.Helper()
	crds, err := testenv.CertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	kube(t, "", "apply", "--server-side", "-f", crds)
	version := strings.TrimSpace(mustOutput(t, "go", "list", "-m", "-f", "{{.Version}}", "github.com/cert-manager/cert-manager"))
	kube(t, fmt.Sprintf(certManagerManifest, version), "apply", "--server-side", "-f", "-")
	kube(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: test-ca, namespace: cert-manager}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: test-ca}
spec: {ca: {secretName: test-ca}}
`, base64.StdEncoding.EncodeToString(ca.certPEM), base64.StdEncoding.EncodeToString(ca.keyPEM)), "apply", "--server-side", "-f", "-")
	eventually(t, 3*time.Minute, "the test-ca ClusterIssuer is Ready", func() error {
		out, err := kubeErr("", "get", "clusterissuer", "test-ca", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && out != "True" {
			err = fmt.Errorf("Ready=%q", out)
		}
		return err
	})
}

// certManagerManifest runs the controllers as one pod with the rights they need, as
// cert-manager's chart does (here simply cluster-admin: this cluster exists for one test).
const certManagerManifest = `apiVersion: v1
kind: Namespace
metadata: {name: cert-manager}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cert-manager, namespace: cert-manager}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cert-manager-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: cert-manager, namespace: cert-manager}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cert-manager, namespace: cert-manager}
spec:
  selector: {matchLabels: {app: cert-manager}}
  template:
    metadata: {labels: {app: cert-manager}}
    spec:
      serviceAccountName: cert-manager
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: controller
        image: postwarden.local/cert-manager:%s
        imagePullPolicy: Never
        args: [--cluster-resource-namespace=cert-manager, --leader-elect=false, --health-listen=:9403]
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        readinessProbe: {httpGet: {path: /readyz, port: 9403}, periodSeconds: 2}
`

// installSink runs the mail destination (test/cluster/images/sink) behind a Service at
// sinkIP:25, with its counts on the node's port sinkHTTPPort; it is also the DNS server
// (sinkIP:53) the operator checks DKIM records with, and the delivery events receiver
// (https://sinkIP:sinkEventsPort), whose certificate a cert-manager CA Issuer of the
// sink's namespace signs with eventsCA: a CA the relays know only through the chart's
// relay.deliveryEvents.caBundle, which names the Secret eventsCASecret made here.
func installSink(t testing.TB, eventsCA testCA) {
	t.Helper()
	kube(t, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: sink}
---
apiVersion: v1
kind: Secret
metadata: {name: events-ca, namespace: sink}
type: kubernetes.io/tls
data: {tls.crt: %s, tls.key: %s}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: events-ca, namespace: sink}
spec: {ca: {secretName: events-ca}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: sink-events, namespace: sink}
spec:
  secretName: sink-events-tls
  issuerRef: {name: events-ca, kind: Issuer}
  ipAddresses: [%s]
  privateKey: {algorithm: ECDSA, size: 256}
---
apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
data: {ca.crt: %s}
`, base64.StdEncoding.EncodeToString(eventsCA.certPEM), base64.StdEncoding.EncodeToString(eventsCA.keyPEM), sinkIP,
		namespace, eventsCASecret, namespace, base64.StdEncoding.EncodeToString(eventsCA.certPEM)), "apply", "--server-side", "-f", "-")
	kube(t, "", "wait", "-n", "sink", "--for=condition=Ready", "certificate/sink-events", "--timeout=2m")
	kube(t, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: sink, namespace: sink}
spec:
  selector: {matchLabels: {app: sink}}
  template:
    metadata: {labels: {app: sink}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: sink
        image: postwarden.local/sink:test
        imagePullPolicy: Never
        args: ["-events-listen=:%d", "-events-cert=/etc/sink/events-tls/tls.crt", "-events-key=/etc/sink/events-tls/tls.key"]
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        readinessProbe: {httpGet: {path: /messages, port: 8080}, periodSeconds: 2}
        volumeMounts: [{name: events-tls, mountPath: /etc/sink/events-tls, readOnly: true}]
      volumes: [{name: events-tls, secret: {secretName: sink-events-tls}}]
---
apiVersion: v1
kind: Service
metadata: {name: sink, namespace: sink}
spec:
  type: NodePort
  clusterIP: %s
  selector: {app: sink}
  ports:
  - {name: smtp, port: 25, targetPort: 2525}
  - {name: http, port: 8080, targetPort: 8080, nodePort: %d}
  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}
  - {name: submission, port: 587, targetPort: 2587}
  - {name: events, port: %d, targetPort: %d}
`, sinkEventsPort, sinkIP, sinkHTTPPort, sinkEventsPort, sinkEventsPort), "apply", "--server-side", "-f", "-")
	kube(t, "", "rollout", "status", "-n", "sink", "deployment/sink", "--timeout=3m")
}

// makeSpoolVolumes pre-makes n hostPath PersistentVolumes for the relays' spool claims,
// owned by the image's user, as a local provisioner would.
func makeSpoolVolumes(t testing.TB, n int) {
	t.Helper()
	var docs []string
	for i := range n {
		path := filepath.Join(dir, "volumes", fmt.Sprintf("spool-%d", i))
		if err := os.MkdirAll(path, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: spool-%d}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: %s
  hostPath: {path: %s, type: Directory}
`, i, spoolClass, path))
	}
	kube(t, strings.Join(docs, "---\n"), "apply", "--server-side", "-f", "-")
}

// chartValues are the values the test installs the chart with: the locally built image,
// two operators with leader election, two relays on node ports with
// externalTrafficPolicy Local, spool claims on the pre-made volumes, delivery to the sink,
// the events CA for the sink's delivery events receiver.
func chartValues() map[string]any {
	repo, tag, _ := strings.Cut(imageRef, ":")
	return map[string]any{
		"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"operator": map[string]any{
			"replicas":       2,
			"leaderElection": true,
			"relayHostnames": []any{relayName},
			"certificate": map[string]any{
				"issuerRef": map[string]any{"name": "test-ca", "kind": "ClusterIssuer"},
			},
			// The sink serves the records the test publishes; look them up often.
			"dns": map[string]any{"servers": []any{sinkIP + ":53"}, "checkInterval": "3s"},
		},
		"relay": map[string]any{
			"replicas": 2,
			"service":  map[string]any{"type": "NodePort", "externalTrafficPolicy": "Local"},
			"spool": map[string]any{"persistentVolumeClaim": map[string]any{
				"size": "1Gi", "storageClassName": spoolClass,
			}},
			"delivery": map[string]any{"smarthost": sinkIP + ":25", "retryFirst": "5s", "retryMax": "20s"},
			// The sample domain's own server is the sink, on the cluster's networks (pods
			// 198.18.1.0/24, Services 198.19.0.0/16), which the relay refuses unless allowed.
			"outboundAllowedNetworks": []any{"198.18.1.0/24", "198.19.0.0/16"},
			// The load comes from one address, this host: lift the per-address rate.
			"limits":   map[string]any{"maxConnectionRatePerIP": 100000},
			"shutdown": map[string]any{"drainDelaySeconds": 3, "gracePeriodSeconds": 20},
			// The sink's delivery events receiver has a certificate of the test's events CA.
			"deliveryEvents": map[string]any{"caBundle": map[string]any{"secretName": eventsCASecret}},
		},
	}
}

// helmInstall installs the chart with the Helm Go SDK and waits for its workloads.
func helmInstall(t testing.TB, values map[string]any) {
	t.Helper()
	settings := cli.New()
	settings.KubeConfig = filepath.Join(dir, "kubeconfig")
	settings.SetNamespace(namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), namespace, "secret", func(format string, v ...any) {
		t.Logf("helm: "+format, v...)
	}); err != nil {
		t.Fatal(err)
	}
	chart, err := loader.Load(filepath.Join(testenv.RepoRoot(), "charts", "postwarden"))
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(cfg)
	install.ReleaseName = release
	install.Namespace = namespace
	install.CreateNamespace = true
	install.Wait = true
	install.Timeout = 5 * time.Minute
	if _, err := install.Run(chart, values); err != nil {
		t.Fatalf("helm install: %v", err)
	}
}

func mustOutput(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}
