package relay

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

// The API server is started by the first test that needs it; the relay needs only core
// and coordination types, so no CRDs are installed.
var apiServer testenv.Bare

func TestMain(m *testing.M) {
	code := m.Run()
	apiServer.Stop()
	os.Exit(code)
}

func kubeClient(t testing.TB) kubernetes.Interface { return apiServer.Clientset(t) }

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
	ca := testkit.NewCA(t)
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

func TestDiscoveryObservationsArePublishedPerReplica(t *testing.T) {
	kube := kubeClient(t)
	ctx := context.Background()
	nsObj, err := kube.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "relay-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	dest := testkit.Start(t)
	s := discoverySnapshot(t, dest)
	s.Certificates = []snapshot.Certificate{{SecretName: "relay-tls"}}
	writeShards(t, kube, ns, "relay", s)

	batch := func(pod string) (discoverystate.Batch, string, bool) {
		cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, discoverystate.ObservationsPrefix+pod, metav1.GetOptions{})
		if err != nil {
			return discoverystate.Batch{}, "", false
		}
		b, err := discoverystate.DecodeBatch([]byte(cm.Data[discoverystate.BatchKey]))
		return b, cm.Labels[discoverystate.LabelObservations], err == nil
	}
	relays := map[string]*Relay{}
	for _, pod := range []string{"relay-a", "relay-b"} {
		r, _ := run(t, Config{
			Hostname: relayName, Inbound: Listener{Addr: "127.0.0.1:0"},
			KubeConfigName: "relay", Namespace: ns, Kube: kube, PodName: pod,
			SpoolDir: t.TempDir(), Discovery: DiscoveryConfig{ShipInterval: 100 * time.Millisecond},
		})
		relays[pod] = r
		waitFor(t, pod+" to apply the snapshot", func() bool { return r.Hash() == s.Hash })
		cl := inbound(t, r, "x@foreign.example")
		if err := cl.Rcpt("new-"+pod+"@covered.example", nil); err != nil {
			t.Fatalf("%s: %v", pod, err)
		}
	}
	for pod := range relays {
		want := []string{"Verified new-" + pod + "@covered.example"}
		waitFor(t, pod+"'s observations ConfigMap", func() bool {
			b, label, ok := batch(pod)
			return ok && label == "true" && b.Relay == pod && slices.Equal(kinds(b.Observations), want)
		})
	}

	// The operator acknowledges relay-a's batch: relay-a forgets it, relay-b does not.
	b, _, _ := batch("relay-a")
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, discoverystate.ObservationsPrefix+"relay-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Annotations = map[string]string{discoverystate.AnnotationAcked: discoverystate.AckValue(b.Journal, b.Observations[0].Seq)}
	if _, err := kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "relay-a to forget what was acknowledged", func() bool {
		b, _, ok := batch("relay-a")
		return relays["relay-a"].journal.Pending() == 0 && ok && len(b.Observations) == 0
	})
	if n := relays["relay-b"].journal.Pending(); n != 1 {
		t.Errorf("relay-b has %d observations pending, want 1", n)
	}
}
