package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
)

// TestMain lets the test binary double as the controller binary: with
// CM_CONTROLLER_AS_MAIN=1 it runs main() with the flags in
// CM_CONTROLLER_ARGS, so the flag parsing and signal handling of the real
// entry point are exercised without a separate go build.
func TestMain(m *testing.M) {
	if os.Getenv("CM_CONTROLLER_AS_MAIN") == "1" {
		os.Args = append([]string{os.Args[0]}, strings.Fields(os.Getenv("CM_CONTROLLER_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// defaultAssets is where postwarden's hack/envtest-assets.sh puts the envtest
// binaries; KUBEBUILDER_ASSETS overrides it.
const defaultAssets = "/root/.cache/postwarden/envtest/v1.37.2"

// TestCAIssuerIssuesCertificate runs the controllers in-process against a real
// kube-apiserver (envtest) and has them issue a Certificate from a CA Issuer.
func TestCAIssuerIssuesCertificate(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = defaultAssets
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Skipf("envtest binaries not available (set KUBEBUILDER_ASSETS): %v", err)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{certManagerCRDDir(t)},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})

	// The controllers take a kubeconfig path, like the real binary.
	user, err := env.AddUser(envtest.User{Name: "cert-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("adding envtest user: %v", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	kubeconfigPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	kube := kubernetes.NewForConfigOrDie(cfg)
	cm := cmclient.NewForConfigOrDie(cfg)
	ctx, cancelTest := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelTest()

	const (
		systemNS = "cert-manager"
		ns       = "relay"
	)
	for _, n := range []string{systemNS, ns} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace %s: %v", n, err)
		}
	}

	caCert, caCertPEM, caKeyPEM := newCA(t)
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "relay-ca"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: caCertPEM, corev1.TLSPrivateKeyKey: caKeyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating CA secret: %v", err)
	}

	// Start the controllers exactly as main does, with leader election on so
	// the Lease path is exercised too.
	o := defaultOptions()
	o.Kubeconfig = kubeconfigPath
	o.ClusterResourceNamespace = systemNS
	o.LeaderElect = true
	o.LeaderElectionNamespace = systemNS
	o.HealthListen = freeAddr(t)
	runCtx, stopControllers := context.WithCancel(ctx)
	defer stopControllers()
	runDone := make(chan struct{})
	var runErr error
	go func() { runErr = run(runCtx, o); close(runDone) }()
	runAlive := func() error {
		select {
		case <-runDone:
			return fmt.Errorf("controllers exited early: %v", runErr)
		default:
			return nil
		}
	}

	if _, err := cm.CertmanagerV1().Issuers(ns).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "relay-ca"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{
			CA: &cmapi.CAIssuer{SecretName: "relay-ca"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Issuer: %v", err)
	}

	dnsNames := []string{"relay.test", "smtp.example.com"}
	took := issueAndVerify(ctx, t, kube, cm, ns, "relay-tls", dnsNames, caCert, caCertPEM, runAlive)
	t.Logf("in-process controllers: Certificate relay-tls Ready %s after creation", took)

	iss, err := cm.CertmanagerV1().Issuers(ns).Get(ctx, "relay-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !issuerReady(iss) {
		t.Errorf("Issuer not Ready: %+v", iss.Status.Conditions)
	}

	// The approver must have approved the request it signed.
	crs, err := cm.CertmanagerV1().CertificateRequests(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing CertificateRequests: %v", err)
	}
	if len(crs.Items) == 0 {
		t.Fatal("no CertificateRequests found")
	}
	for _, cr := range crs.Items {
		if !hasRequestCondition(cr.Status.Conditions, cmapi.CertificateRequestConditionApproved) {
			t.Errorf("CertificateRequest %s not approved: %+v", cr.Name, cr.Status.Conditions)
		}
	}

	if _, err := kube.CoordinationV1().Leases(systemNS).Get(ctx, o.LeaderElectionID, metav1.GetOptions{}); err != nil {
		t.Errorf("leader election Lease: %v", err)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code := httpStatus(ctx, "http://"+o.HealthListen+p); code != http.StatusOK {
			t.Errorf("GET %s: status %d", p, code)
		}
	}

	stopControllers()
	select {
	case <-runDone:
		if runErr != nil {
			t.Errorf("run returned error on shutdown: %v", runErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancellation")
	}

	// Now the same through main(), as a separate process stopped by SIGTERM.
	// The in-process instance released its Lease, so this one leads at once.
	healthAddr, metricsAddr := freeAddr(t), freeAddr(t)
	var logs strings.Builder
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CM_CONTROLLER_AS_MAIN=1", "CM_CONTROLLER_ARGS="+strings.Join([]string{
		"--kubeconfig=" + kubeconfigPath,
		"--cluster-resource-namespace=" + systemNS,
		"--leader-elect",
		"--leader-election-namespace=" + systemNS,
		"--health-listen=" + healthAddr,
		"--metrics-listen=" + metricsAddr,
		"--v=2",
	}, " "))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting controller process: %v", err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("controller process output:\n%s", logs.String())
		}
	}()
	procAlive := func() error {
		select {
		case <-exited:
			return fmt.Errorf("controller process exited early: %v", exitErr)
		default:
			return nil
		}
	}

	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := procAlive(); err != nil {
			return false, err
		}
		return httpStatus(ctx, "http://"+healthAddr+"/readyz") == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("controller process never became ready: %v", err)
	}
	took = issueAndVerify(ctx, t, kube, cm, ns, "relay-tls-2", []string{"relay.test", "smtp.example.com"}, caCert, caCertPEM, procAlive)
	t.Logf("controller process: Certificate relay-tls-2 Ready %s after creation", took)
	if code := httpStatus(ctx, "http://"+metricsAddr+"/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics: status %d", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("controller process did not exit cleanly on SIGTERM: %v", exitErr)
		}
		if !strings.Contains(logs.String(), "control loops exited") {
			t.Error("controller process exited without shutting its control loops down")
		}
	case <-time.After(30 * time.Second):
		t.Error("controller process did not exit within 30s of SIGTERM")
	}
}

// issueAndVerify creates a Certificate for dnsNames from the relay-ca Issuer,
// waits (up to 60s) until it is Ready and checks its Secret against the CA.
// It returns how long issuance took. The wait is aborted as soon as alive
// reports that the controllers have died.
func issueAndVerify(ctx context.Context, t *testing.T, kube kubernetes.Interface, cm cmclient.Interface, ns, name string, dnsNames []string, caCert *x509.Certificate, caCertPEM []byte, alive func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := cm.CertmanagerV1().Certificates(ns).Create(ctx, &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name,
			DNSNames:   dnsNames,
			IssuerRef:  cmmeta.IssuerReference{Name: "relay-ca", Kind: cmapi.IssuerKind, Group: "cert-manager.io"},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Certificate %s: %v", name, err)
	}

	var last *cmapi.Certificate
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := alive(); err != nil {
			return false, err
		}
		c, err := cm.CertmanagerV1().Certificates(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = c
		return hasCondition(c.Status.Conditions, cmapi.CertificateConditionReady), nil
	})
	if err != nil {
		t.Fatalf("Certificate %s not Ready: %v; last status: %+v", name, err, statusOf(last))
	}
	took := time.Since(start).Round(time.Millisecond)

	sec, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading secret %s: %v", name, err)
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt"} {
		if len(sec.Data[k]) == 0 {
			t.Fatalf("secret %s has no %s (keys: %v)", name, k, keys(sec.Data))
		}
	}
	if string(sec.Data["ca.crt"]) != string(caCertPEM) {
		t.Errorf("%s: ca.crt is not the issuing CA", name)
	}
	if _, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Errorf("%s: tls.crt/tls.key do not form a key pair: %v", name, err)
	}
	block, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatalf("%s: tls.crt is not PEM", name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: parsing tls.crt: %v", name, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, dns := range dnsNames {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dns, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: tls.crt does not verify for %s against the CA: %v", name, dns, err)
		}
	}
	t.Logf("%s issued: dnsNames=%v key=%v notAfter=%s", name, leaf.DNSNames, leaf.PublicKeyAlgorithm, leaf.NotAfter.Format(time.RFC3339))
	return took
}

// certManagerCRDDir finds deploy/crds inside the cert-manager module this
// module depends on.
func certManagerCRDDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list cert-manager module: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("go list cert-manager module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
}

func newCA(t *testing.T) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postwarden test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func hasCondition(conds []cmapi.CertificateCondition, typ cmapi.CertificateConditionType) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

func hasRequestCondition(conds []cmapi.CertificateRequestCondition, typ cmapi.CertificateRequestConditionType) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

func issuerReady(iss *cmapi.Issuer) bool {
	for _, c := range iss.Status.Conditions {
		if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}

func statusOf(c *cmapi.Certificate) any {
	if c == nil {
		return nil
	}
	return c.Status
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
