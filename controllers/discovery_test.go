package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The whole merge loop: two relays' batches, a replay, the threshold, the spec winning,
// and expiry driven by the operator's clock.
func TestDiscoveryMergeLoop(t *testing.T) {
	ns := newNamespace(t, "disc")
	domain := ns + ".example"
	at := func(addr string) string { return addr + "@" + domain }
	create(t, mailDomain(ns, "main", domain, at("listed")))
	policy := discoveryPolicy(ns, "learn", 2, "main")
	create(t, policy)
	now := discoveryClock.Now().UTC().Truncate(time.Second)
	obs := func(seq uint64, kind discoverystate.Kind, local string) discoverystate.Observation {
		return discoverystate.Observation{Seq: seq, Kind: kind, Address: at(local), Time: now}
	}
	relay1, relay2 := "relay-a-"+ns, "relay-b-"+ns

	first := []discoverystate.Observation{
		obs(1, discoverystate.Verified, "ann"), obs(2, discoverystate.Delivered, "ann"),
		obs(3, discoverystate.Delivered, "bob"), obs(4, discoverystate.Delivered, "listed"),
	}
	publish(t, relay1, "journal-a", first...)
	waitAck(t, relay1, "journal-a/4")
	st := stateWhere(t, ns, "learn", "the first batch is merged", func(st dstate.State) error {
		return cmpErr(wantAddress(st, at("ann"), snapshot.DiscoveredPending, 1), wantAddress(st, at("bob"), snapshot.DiscoveredPending, 1),
			wantAddress(st, at("listed"), "", 0))
	})
	if st.Journals["journal-a"].Seq != 4 {
		t.Errorf("watermark of journal-a is %+v, want seq 4", st.Journals["journal-a"])
	}
	_, cms, err := stateOf(t, ns, "learn")
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms {
		if cm.Namespace != operatorNS || cm.Annotations[dstate.AnnotationPolicy] != ns+"/learn" {
			t.Errorf("state ConfigMap %s/%s is not the policy's, in the operator namespace: %v", cm.Namespace, cm.Name, cm.Annotations)
		}
		if cm.Annotations[dstate.AnnotationParts] == "" || cm.Annotations[dstate.AnnotationPart] == "" {
			t.Errorf("state ConfigMap %s lacks its part annotations: %v", cm.Name, cm.Annotations)
		}
	}
	snapshotWhere(t, "the relays get the pending addresses", func(s *snapshot.Snapshot) error {
		got := discovered(s, domain)
		if got[at("ann")] != snapshot.DiscoveredPending || got[at("bob")] != snapshot.DiscoveredPending || len(got) != 2 {
			return fmt.Errorf("discovered %v", got)
		}
		return nil
	})
	eventually(t, "status counts and names the state", func() error {
		if err := get(t, policy); err != nil {
			return err
		}
		s := policy.Status
		if s.Discovered.Pending != 2 || len(s.RecentAddresses) != 2 || s.LastMergeTime == nil ||
			!slices.Equal(s.StateConfigMaps, []string{dstate.StateName(ns, "learn", 0)}) {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})

	// The acknowledgement was lost: the same observations come again, with one more.
	// Only the new one counts: bob reaches the threshold, ann does not.
	publish(t, relay1, "journal-a", append(first, obs(5, discoverystate.Delivered, "bob"))...)
	waitAck(t, relay1, "journal-a/5")
	stateWhere(t, ns, "learn", "a replayed batch counts once", func(st dstate.State) error {
		return cmpErr(wantAddress(st, at("bob"), snapshot.DiscoveredUser, 0), wantAddress(st, at("ann"), snapshot.DiscoveredPending, 1))
	})

	// Another replica's journal counts on its own.
	publish(t, relay2, "journal-b", discoverystate.Observation{Seq: 1, Kind: discoverystate.Delivered, Address: at("ann"), Time: now})
	waitAck(t, relay2, "journal-b/1")
	stateWhere(t, ns, "learn", "the second relay's message promotes ann", func(st dstate.State) error {
		return wantAddress(st, at("ann"), snapshot.DiscoveredUser, 0)
	})
	eventually(t, "status counts two users", func() error {
		if err := get(t, policy); err != nil {
			return err
		}
		if s := policy.Status.Discovered; s.Users != 2 || s.Pending != 0 {
			return fmt.Errorf("discovered %+v", s)
		}
		if r := policy.Status.RecentAddresses; len(r) != 2 || r[0].State != snapshot.DiscoveredUser || r[0].Reason != dstate.ReasonThreshold {
			return fmt.Errorf("recent %+v", r)
		}
		return nil
	})

	// The spec starts listing bob: discovery forgets him.
	md := &relayv1alpha1.MailDomain{ObjectMeta: objectMeta(ns, "main")}
	update(t, md, func(md *relayv1alpha1.MailDomain) {
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: at("bob")})
	})
	stateWhere(t, ns, "learn", "the spec wins", func(st dstate.State) error { return wantAddress(st, at("bob"), "", 0) })

	// A verified address that never receives enough mail expires.
	publish(t, relay2, "journal-b", discoverystate.Observation{Seq: 2, Kind: discoverystate.Verified, Address: at("carl"), Time: now})
	stateWhere(t, ns, "learn", "carl is pending", func(st dstate.State) error {
		return wantAddress(st, at("carl"), snapshot.DiscoveredPending, 0)
	})
	discoveryClock.SetTime(discoveryClock.Now().Add(22 * 24 * time.Hour))
	stateWhere(t, ns, "learn", "carl expired", func(st dstate.State) error {
		return wantAddress(st, at("carl"), snapshot.DiscoveredInvalid, 0)
	})
	snapshotWhere(t, "the relays refuse carl", func(s *snapshot.Snapshot) error {
		got := discovered(s, domain)
		if got[at("carl")] != snapshot.DiscoveredInvalid || got[at("ann")] != snapshot.DiscoveredUser || got[at("bob")] != "" {
			return fmt.Errorf("discovered %v", got)
		}
		return nil
	})
}

// The observations of a relay gone for good are deleted once acknowledged; a live
// relay's are kept.
func TestDiscoveryObservationsOfGoneRelaysAreDeleted(t *testing.T) {
	suffix := newNamespace(t, "gc")
	gone, live := "gone-"+suffix, "live-"+suffix
	leaseSecs := int32(30 * 24 * 3600)
	renew := metav1.NewMicroTime(discoveryClock.Now())
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: snapshot.LeasePrefix + live,
		Labels: map[string]string{snapshot.LabelRelayStatus: "true"}},
		Spec: coordinationv1.LeaseSpec{RenewTime: &renew, LeaseDurationSeconds: &leaseSecs}}
	create(t, lease)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), lease) })
	for _, pod := range []string{gone, live} {
		publish(t, pod, "journal-"+pod, discoverystate.Observation{Seq: 1, Kind: discoverystate.Verified,
			Address: "x@nobody-covers.example", Time: discoveryClock.Now()})
		waitAck(t, pod, "journal-"+pod+"/1")
	}
	discoveryClock.SetTime(discoveryClock.Now().Add(25 * time.Hour))
	eventually(t, "the gone relay's observations are deleted", func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + gone}}
		if err := get(t, cm); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + live}}
	if err := get(t, cm); err != nil {
		t.Errorf("the live relay's observations: %v", err)
	}
	_ = k8s.Delete(context.Background(), cm)
}
