package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// relayLease writes the Lease a relay replica keeps, reporting hash, renewed at
// renewed for duration seconds.
func relayLease(t *testing.T, pod, hash string, renewed time.Time, duration int32) {
	t.Helper()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: snapshot.LeasePrefix + pod}}
	err := get(t, lease)
	exists := err == nil
	lease.Labels = map[string]string{snapshot.LabelRelayStatus: "true"}
	lease.Annotations = map[string]string{snapshot.AnnotationHash: hash}
	holder := pod
	at := metav1.NewMicroTime(renewed)
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &at, LeaseDurationSeconds: &duration}
	if exists {
		err = k8s.Update(context.Background(), lease)
	} else {
		err = k8s.Create(context.Background(), lease)
	}
	if err != nil {
		t.Fatalf("writing Lease for %s: %v", pod, err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), lease) })
}

func TestReadyFollowsWhatTheRelaysReport(t *testing.T) {
	ns := newNamespace(t, "ready")
	domain := ns + ".example"
	md := mailDomain(ns, "main", domain, "a@"+domain)
	create(t, md)
	readyIs := func(what, want string) {
		t.Helper()
		eventually(t, what, func() error {
			if err := get(t, md); err != nil {
				return err
			}
			return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionReady, want)
		})
	}
	current := func() string {
		t.Helper()
		return snapshotWhere(t, "the domain is in the config", func(s *snapshot.Snapshot) error {
			if findDomain(s, domain) == nil {
				return fmt.Errorf("not yet")
			}
			return nil
		}).Hash
	}
	propagating := "False/" + relayv1alpha1.ReasonPropagating
	enforced := "True/" + relayv1alpha1.ReasonEnforced
	hour := int32(3600)

	readyIs("accepted but no relay reports yet", propagating)
	relayLease(t, "a", "0000000000000000000000000000000000000000000000000000000000000000", time.Now(), hour)
	readyIs("a relay on an unknown snapshot does not enforce the domain", propagating)

	relayLease(t, "a", current(), time.Now(), hour)
	readyIs("the only live relay applied the config", enforced)

	relayLease(t, "b", "stale", time.Now(), hour)
	readyIs("a second relay on an old snapshot holds Ready back", propagating)

	relayLease(t, "b", "stale", time.Now().Add(-2*time.Hour), 10)
	readyIs("an expired Lease does not count", enforced)

	update(t, md, func(m *relayv1alpha1.MailDomain) {
		m.Spec.Users = append(m.Spec.Users, relayv1alpha1.MailUser{Address: "new@" + domain})
	})
	snapshotWhere(t, "the new user is in the config", func(s *snapshot.Snapshot) error {
		if d := findDomain(s, domain); d == nil || len(d.Users) != 2 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	readyIs("a change is not enforced until the relays apply it", propagating)
	relayLease(t, "a", current(), time.Now(), hour)
	readyIs("enforced again once the relay reports the new config", enforced)
	if err := get(t, md); err != nil {
		t.Fatal(err)
	}
	if md.Status.ConfigHash != current() {
		t.Errorf("status.configHash %s, want the first config with the change, %s", md.Status.ConfigHash, current())
	}
}
