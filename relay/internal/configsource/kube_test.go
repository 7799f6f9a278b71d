package configsource

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// kube is the API server of the Kubernetes tests; the relay needs only core types, so
// no CRDs are installed.
var kube kubernetes.Interface

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, "+
			"or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
		os.Exit(1)
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	kube = kubernetes.NewForConfigOrDie(cfg)
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// namespace creates a namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "relay-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// writeShards writes s as shard Secrets the way the operator does, named <prefix>-<i>.
func writeShards(t *testing.T, ns, config, prefix string, s *snapshot.Snapshot, maxBytes int, only ...int) []snapshot.Shard {
	t.Helper()
	shards, err := snapshot.Encode(s, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	// The operator's order: from the last shard down to shard 0.
	for i := len(shards) - 1; i >= 0; i-- {
		sh := shards[i]
		if len(only) > 0 && !contains(only, sh.Index) {
			continue
		}
		putSecret(t, ns, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, sh.Index),
				Labels: map[string]string{snapshot.LabelConfig: config}, Annotations: sh.Annotations()},
			Data: map[string][]byte{snapshot.DataKey: sh.Data},
		})
	}
	return shards
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// putSecret creates or replaces a Secret.
func putSecret(t *testing.T, ns string, sec *corev1.Secret) {
	t.Helper()
	ctx := context.Background()
	sec.Namespace = ns
	_, err := kube.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = kube.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func tlsSecret(name string, p tlscert.Pair) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: p.CertPEM, corev1.TLSPrivateKeyKey: p.KeyPEM}}
}

// bigSnapshot has enough users that its shards are several at a small shard size.
func bigSnapshot(t *testing.T, certs []snapshot.Certificate, domain string, users int) *snapshot.Snapshot {
	t.Helper()
	s, _ := newSnapshot(t, certs, domain)
	for i := range users {
		s.Domains[0].Users = append(s.Domains[0].Users, snapshot.User{Address: fmt.Sprintf("user%d@%s", i, domain)})
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKubeSourceAppliesCompleteShardSets(t *testing.T) {
	ns := namespace(t)
	ca := testkit.NewCA(t)
	certs := []snapshot.Certificate{{SecretName: "relay-tls"}}
	first := bigSnapshot(t, certs, "example.com", 400)

	rec := newRecorder()
	run(t, &Kube{Client: kube, Namespace: ns, Name: "relay"}, rec)

	// Two of three shards: nothing may be applied. Then the last one completes the set.
	shards := writeShards(t, ns, "relay", "relay-a", first, 256, 0, 1)
	if len(shards) < 3 {
		t.Fatalf("the test snapshot made %d shards, want at least 3", len(shards))
	}
	// A Secret of another config, and a malformed one, are ignored.
	other, _ := newSnapshot(t, nil, "other.example")
	writeShards(t, ns, "other", "other", other, 0)
	putSecret(t, ns, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "junk",
		Labels: map[string]string{snapshot.LabelConfig: "relay"}}})
	select {
	case u := <-rec.applied:
		t.Fatalf("applied %s from an incomplete set", u.Snapshot.Hash)
	default:
	}
	indices := make([]int, 0, len(shards))
	for i := 2; i < len(shards); i++ {
		indices = append(indices, i)
	}
	writeShards(t, ns, "relay", "relay-a", first, 256, indices...)
	u := rec.waitApplied(t, "the first snapshot", hasHash(first.Hash))
	if len(u.Missing) != 1 || len(u.Certificates) != 0 {
		t.Fatalf("missing %v, certificates %d; want the certificate Secret missing", u.Missing, len(u.Certificates))
	}

	// cert-manager issues the certificate, then renews it.
	issued := tlscerttest.Issue(t, ca, "relay.example.org")
	putSecret(t, ns, tlsSecret("relay-tls", issued))
	rec.waitApplied(t, "the issued certificate", func(u Update) bool {
		return len(u.Certificates) == 1 && bytes.Equal(u.Certificates[0].CertPEM, issued.CertPEM)
	})
	renewed := tlscerttest.Issue(t, ca, "relay.example.org")
	putSecret(t, ns, tlsSecret("relay-tls", renewed))
	rec.waitApplied(t, "the renewed certificate", func(u Update) bool {
		return len(u.Certificates) == 1 && bytes.Equal(u.Certificates[0].CertPEM, renewed.CertPEM)
	})

	// A new snapshot written over the old one, with fewer shards, wins once complete;
	// the old set's remaining shards cannot make a complete set any more.
	second := bigSnapshot(t, certs, "example.net", 10)
	writeShards(t, ns, "relay", "relay-a", second, 0)
	rec.waitApplied(t, "the second snapshot", hasHash(second.Hash))

	// A set written beside the current one under other names wins too.
	third := bigSnapshot(t, certs, "example.org", 10)
	writeShards(t, ns, "relay", "relay-b", third, 0)
	rec.waitApplied(t, "the third snapshot", hasHash(third.Hash))
}

func TestKubeSourceRefusesACorruptSet(t *testing.T) {
	ns := namespace(t)
	s, _ := newSnapshot(t, nil, "example.com")
	rec := newRecorder()
	run(t, &Kube{Client: kube, Namespace: ns, Name: "relay"}, rec)
	shards, err := snapshot.Encode(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The hash annotation claims another content.
	ann := shards[0].Annotations()
	ann[snapshot.AnnotationHash] = "f00d"
	putSecret(t, ns, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "relay-0", Labels: map[string]string{snapshot.LabelConfig: "relay"}, Annotations: ann},
		Data:       map[string][]byte{snapshot.DataKey: shards[0].Data},
	})
	if err := rec.waitRefused(t); err == nil {
		t.Fatal("nil refusal")
	}
}

func TestLeaseReporterPublishesTheHash(t *testing.T) {
	ns := namespace(t)
	ready, hash := make(chan bool, 1), "aaaa"
	ready <- false
	status := func() (bool, string) {
		r := <-ready
		ready <- r
		return r, hash
	}
	extra := map[string]string{snapshot.AnnotationLoginFailures: `[{"authSecret":"a"}]`}
	r := NewLeaseReporter(LeaseReporter{Client: kube, Namespace: ns, PodName: "relay-0", Status: status, Duration: 3 * time.Second,
		Annotations: func() map[string]string { return extra }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	leases := kube.CoordinationV1().Leases(ns)
	if _, err := leases.Get(ctx, snapshot.LeasePrefix+"relay-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a replica that is not ready has a lease (%v)", err)
	}
	<-ready
	ready <- true
	r.Poke()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := leases.Get(ctx, snapshot.LeasePrefix+"relay-0", metav1.GetOptions{})
		if err == nil {
			if l.Annotations[snapshot.AnnotationHash] != hash || l.Labels[snapshot.LabelRelayStatus] != "true" ||
				l.Annotations[snapshot.AnnotationLoginFailures] != extra[snapshot.AnnotationLoginFailures] ||
				*l.Spec.HolderIdentity != "relay-0" || *l.Spec.LeaseDurationSeconds != 3 || l.Spec.RenewTime == nil {
				t.Fatalf("lease %+v %+v does not follow the convention", l.ObjectMeta, l.Spec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Certificate files given beside a Kubernetes config are watched on disk.
func TestKubeSourceWatchesCertificateFiles(t *testing.T) {
	ns := namespace(t)
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	certFile, keyFile := tlscerttest.WriteFiles(t, dir, "relay", tlscerttest.Issue(t, ca, "relay.example.org"))
	s, _ := newSnapshot(t, nil, "example.com")
	writeShards(t, ns, "relay", "relay", s, 0)
	rec := newRecorder()
	run(t, &Kube{Client: kube, Namespace: ns, Name: "relay", ExtraCerts: []CertFiles{{CertFile: certFile, KeyFile: keyFile}}}, rec)
	rec.waitApplied(t, "the snapshot with the file certificate", func(u Update) bool {
		return u.Snapshot.Hash == s.Hash && len(u.Certificates) == 1
	})
	renewed := tlscerttest.Issue(t, ca, "relay.example.org")
	tlscerttest.WriteFiles(t, dir, "relay", renewed)
	rec.waitApplied(t, "the renewed file certificate", func(u Update) bool {
		return len(u.Certificates) == 1 && bytes.Equal(u.Certificates[0].CertPEM, renewed.CertPEM)
	})
}

// The delivery events CA bundle beside a Kubernetes config is watched on disk too.
func TestKubeSourceWatchesTheEventsCABundle(t *testing.T) {
	ns := namespace(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	first := []byte(testkit.NewCA(t).PEM())
	if err := os.WriteFile(caFile, first, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := newSnapshot(t, nil, "example.com")
	writeShards(t, ns, "relay", "relay", s, 0)
	rec := newRecorder()
	run(t, &Kube{Client: kube, Namespace: ns, Name: "relay", EventsCAFile: caFile}, rec)
	rec.waitApplied(t, "the snapshot with the bundle", func(u Update) bool {
		return u.Snapshot.Hash == s.Hash && bytes.Equal(u.EventsCA, first)
	})
	second := []byte(testkit.NewCA(t).PEM())
	if err := os.WriteFile(caFile, second, 0o600); err != nil {
		t.Fatal(err)
	}
	rec.waitApplied(t, "the rewritten bundle", func(u Update) bool { return bytes.Equal(u.EventsCA, second) })
}
