package relay

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/postwarden/postwarden/relay/internal/smtptest"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The API server is started by the first test that needs it; the relay needs only core
// and coordination types, so no CRDs are installed.
var (
	kubeOnce sync.Once
	kubeEnv  *envtest.Environment
	kubeCS   kubernetes.Interface
	kubeErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kubeEnv != nil {
		_ = kubeEnv.Stop()
	}
	os.Exit(code)
}

func kubeClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	kubeOnce.Do(func() {
		if os.Getenv("KUBEBUILDER_ASSETS") == "" {
			kubeErr = fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
				"or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
			return
		}
		kubeEnv = &envtest.Environment{}
		cfg, err := kubeEnv.Start()
		if err != nil {
			kubeEnv, kubeErr = nil, fmt.Errorf("starting envtest: %w", err)
			return
		}
		kubeCS, kubeErr = kubernetes.NewForConfig(cfg)
	})
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	return kubeCS
}

func putSecret(t testing.TB, kube kubernetes.Interface, sec *corev1.Secret) {
	t.Helper()
	ctx := context.Background()
	_, err := kube.CoreV1().Secrets(sec.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = kube.CoreV1().Secrets(sec.Namespace).Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writeShards writes s the way the operator does: shard Secrets named <prefix>-<i>,
// rewritten in place.
func writeShards(t testing.TB, kube kubernetes.Interface, ns, prefix string, s *snapshot.Snapshot) {
	t.Helper()
	shards, err := snapshot.Encode(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(shards) - 1; i >= 0; i-- { // the operator's order
		sh := shards[i]
		putSecret(t, kube, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, sh.Index), Namespace: ns,
				Labels: map[string]string{snapshot.LabelConfig: "relay"}, Annotations: sh.Annotations()},
			Data: map[string][]byte{snapshot.DataKey: sh.Data},
		})
	}
}

func tlsSecret(ns string, p tlscert.Pair) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "relay-tls", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: p.CertPEM, corev1.TLSPrivateKeyKey: p.KeyPEM}}
}

func TestKubernetesConfigAndStatusLease(t *testing.T) {
	kube := kubeClient(t)
	ctx := context.Background()
	nsObj, err := kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "relay-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	a, b := creds(t)
	ca := smtptest.NewCA(t)
	certs := []snapshot.Certificate{{SecretName: "relay-tls"}}
	v1 := newSnapshot(t, certs, a)
	writeShards(t, kube, ns, "relay", v1)

	r, _ := run(t, Config{
		Hostname:       relayName,
		Submission:     Listener{Addr: "127.0.0.1:0"},
		KubeConfigName: "relay",
		Namespace:      ns,
		Kube:           kube,
		PodName:        "relay-0",
		LeaseDuration:  3 * time.Second,
		SpoolDir:       t.TempDir(),
		HTTPAddr:       "127.0.0.1:0",
	})
	waitFor(t, "the relay to apply v1", func() bool { return r.Hash() == v1.Hash })
	if r.Ready() {
		t.Fatal("ready without a certificate")
	}
	putSecret(t, kube, tlsSecret(ns, tlscerttest.Issue(t, ca, relayName)))
	waitFor(t, "readiness once cert-manager has issued the certificate", r.Ready)

	leaseHash := func() string {
		l, err := kube.CoordinationV1().Leases(ns).Get(ctx, snapshot.LeasePrefix+"relay-0", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return l.Annotations[snapshot.AnnotationHash]
	}
	waitFor(t, "the status lease to report v1", func() bool { return leaseHash() == v1.Hash })
	addr := r.SubmissionAddr().String()
	if _, err := submit(addr, ca.Pool(), a); err != nil {
		t.Fatal(err)
	}

	v2 := newSnapshot(t, certs, a, b)
	writeShards(t, kube, ns, "relay", v2)
	waitFor(t, "the relay to apply v2", func() bool { return r.Hash() == v2.Hash })
	if _, err := submit(addr, ca.Pool(), b); err != nil {
		t.Fatalf("the credential added in v2 does not work: %v", err)
	}
	waitFor(t, "the status lease to report v2", func() bool { return leaseHash() == v2.Hash })

	renewed := tlscerttest.Issue(t, ca, relayName)
	putSecret(t, kube, tlsSecret(ns, renewed))
	leaf, err := tlsLeaf(renewed.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new client to see the renewed certificate", func() bool {
		cl, err := login(addr, ca.Pool(), a)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		state, _ := cl.TLSConnectionState()
		return state.PeerCertificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0
	})
}
