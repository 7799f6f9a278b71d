package discovery

import (
	"context"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/test/testenv"
)

// The API server starts only for the tests that need it, so the rest of the package
// runs without envtest binaries.
var kubeEnv testenv.Bare

func TestMain(m *testing.M) {
	code := m.Run()
	kubeEnv.Stop()
	os.Exit(code)
}

func apiServer(t testing.TB) kubernetes.Interface { return kubeEnv.Clientset(t) }

func TestConfigMapPublisher(t *testing.T) {
	client := apiServer(t)
	ctx := context.Background()
	ns, err := client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "discovery-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	pub := &ConfigMapPublisher{Client: client, Namespace: ns.Name, PodName: "relay-0"}
	ship := &Shipper{Journal: j, Publisher: pub, Relay: "relay-0"}
	for _, a := range []string{"a@example.com", "b@example.com"} {
		if err := j.Record(discoverystate.Delivered, a, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := ship.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() (*corev1.ConfigMap, discoverystate.Batch) {
		t.Helper()
		cm, err := client.CoreV1().ConfigMaps(ns.Name).Get(ctx, discoverystate.ObservationsPrefix+"relay-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := discoverystate.DecodeBatch([]byte(cm.Data[discoverystate.BatchKey]))
		if err != nil {
			t.Fatal(err)
		}
		return cm, b
	}
	cm, b := read()
	if cm.Labels[discoverystate.LabelObservations] != "true" || b.Journal != j.ID() || b.Relay != "relay-0" || len(b.Observations) != 2 {
		t.Fatalf("published %v %+v", cm.Labels, b)
	}

	// The operator merges the batch and acknowledges it; an acknowledgement for another
	// journal is ignored.
	cm.Annotations = map[string]string{discoverystate.AnnotationAcked: discoverystate.AckValue("other-journal", 2)}
	if cm, err = client.CoreV1().ConfigMaps(ns.Name).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ship.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if j.Pending() != 2 {
		t.Fatalf("%d pending after a foreign acknowledgement, want 2", j.Pending())
	}
	cm.Annotations[discoverystate.AnnotationAcked] = discoverystate.AckValue(j.ID(), 1)
	if _, err := client.CoreV1().ConfigMaps(ns.Name).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ship.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if j.Pending() != 1 {
		t.Fatalf("%d pending after acknowledging seq 1, want 1", j.Pending())
	}
	if err := ship.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, b = read(); len(b.Observations) != 1 || b.Observations[0].Address != "b@example.com" {
		t.Fatalf("published after the acknowledgement: %+v, want only b@example.com", b.Observations)
	}
	// An unchanged batch is not written again.
	before, _ := read()
	if err := ship.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := read(); after.ResourceVersion != before.ResourceVersion {
		t.Fatalf("an unchanged batch was rewritten (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}
}
