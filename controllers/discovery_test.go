package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func verifyHash(hash, password string) bool {
	h, err := snapshot.ParsePasswordHash(hash)
	return err == nil && h.Verify(password)
}

// publish writes a relay's observations ConfigMap as the relay does: the batch under
// batch.json, keeping whatever acknowledgement the operator left.
func publish(t testing.TB, pod, journal string, obs ...discoverystate.Observation) {
	t.Helper()
	data, err := discoverystate.EncodeBatch(discoverystate.Batch{Journal: journal, Relay: pod, Observations: obs})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + pod,
		Labels: map[string]string{discoverystate.LabelObservations: "true"}}}
	eventually(t, "publishing the observations of "+pod, func() error {
		err := get(t, cm)
		if apierrors.IsNotFound(err) {
			cm.Data = map[string]string{discoverystate.BatchKey: string(data)}
			cm.ResourceVersion = ""
			return k8s.Create(context.Background(), cm)
		}
		if err != nil {
			return err
		}
		cm.Data = map[string]string{discoverystate.BatchKey: string(data)}
		return k8s.Update(context.Background(), cm)
	})
}

func waitAck(t testing.TB, pod, want string) {
	t.Helper()
	eventually(t, pod+" is acknowledged up to "+want, func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: discoverystate.ObservationsPrefix + pod}}
		if err := get(t, cm); err != nil {
			return err
		}
		if got := cm.Annotations[discoverystate.AnnotationAcked]; got != want {
			return fmt.Errorf("acknowledged %q", got)
		}
		return nil
	})
}

// stateOf reads a policy's state as kubectl would.
func stateOf(t testing.TB, ns, policy string) (discoverystate.State, []corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{discoverystate.LabelState: policy}); err != nil {
		return discoverystate.State{}, nil, err
	}
	if len(list.Items) == 0 {
		return discoverystate.State{}, nil, fmt.Errorf("no state ConfigMaps")
	}
	var parts [][]byte
	for _, cm := range list.Items {
		parts = append(parts, []byte(cm.Data[discoverystate.StateKey]))
	}
	st, err := discoverystate.DecodeState(parts...)
	return st, list.Items, err
}

func addressIn(st discoverystate.State, addr string) *discoverystate.Address {
	for i := range st.Addresses {
		if st.Addresses[i].Address == addr {
			return &st.Addresses[i]
		}
	}
	return nil
}

// stateWhere polls until the policy's state satisfies check.
func stateWhere(t testing.TB, ns, policy, what string, check func(discoverystate.State) error) discoverystate.State {
	t.Helper()
	var st discoverystate.State
	eventually(t, what, func() error {
		s, _, err := stateOf(t, ns, policy)
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return err
		}
		st = s
		return nil
	})
	return st
}

func wantAddress(st discoverystate.State, addr, state string, clean int) error {
	a := addressIn(st, addr)
	switch {
	case a == nil && state == "":
		return nil
	case a == nil:
		return fmt.Errorf("%s is not tracked", addr)
	case state == "":
		return fmt.Errorf("%s is tracked as %s, want forgotten", addr, a.State)
	case a.State != state || len(a.Clean) != clean:
		return fmt.Errorf("%s is %s with %d clean messages, want %s with %d", addr, a.State, len(a.Clean), state, clean)
	}
	return nil
}

func discovered(s *snapshot.Snapshot, domain string) map[string]string {
	out := map[string]string{}
	if d := findDomain(s, domain); d != nil {
		for _, a := range d.Discovered {
			out[a.Address] = a.State
		}
	}
	return out
}

func discoveryPolicy(ns, name string, threshold int32, refs ...string) *relayv1alpha1.DiscoveryPolicy {
	p := &relayv1alpha1.DiscoveryPolicy{ObjectMeta: objectMeta(ns, name), Spec: relayv1alpha1.DiscoveryPolicySpec{DetectionThreshold: threshold}}
	for _, r := range refs {
		p.Spec.MailDomainRefs = append(p.Spec.MailDomainRefs, relayv1alpha1.MailDomainReference{Name: r})
	}
	return p
}

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
	st := stateWhere(t, ns, "learn", "the first batch is merged", func(st discoverystate.State) error {
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
		if ref := metav1.GetControllerOf(&cm); ref == nil || ref.Kind != "DiscoveryPolicy" || ref.Name != "learn" {
			t.Errorf("state ConfigMap %s is not owned by the policy: %+v", cm.Name, cm.OwnerReferences)
		}
		if cm.Annotations[discoverystate.AnnotationParts] == "" || cm.Annotations[discoverystate.AnnotationPart] == "" {
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
			!slices.Equal(s.StateConfigMaps, []string{discoverystate.StateName("learn", 0)}) {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})

	// The acknowledgement was lost: the same observations come again, with one more.
	// Only the new one counts: bob reaches the threshold, ann does not.
	publish(t, relay1, "journal-a", append(first, obs(5, discoverystate.Delivered, "bob"))...)
	waitAck(t, relay1, "journal-a/5")
	stateWhere(t, ns, "learn", "a replayed batch counts once", func(st discoverystate.State) error {
		return cmpErr(wantAddress(st, at("bob"), snapshot.DiscoveredUser, 0), wantAddress(st, at("ann"), snapshot.DiscoveredPending, 1))
	})

	// Another replica's journal counts on its own.
	publish(t, relay2, "journal-b", discoverystate.Observation{Seq: 1, Kind: discoverystate.Delivered, Address: at("ann"), Time: now})
	waitAck(t, relay2, "journal-b/1")
	stateWhere(t, ns, "learn", "the second relay's message promotes ann", func(st discoverystate.State) error {
		return wantAddress(st, at("ann"), snapshot.DiscoveredUser, 0)
	})
	eventually(t, "status counts two users", func() error {
		if err := get(t, policy); err != nil {
			return err
		}
		if s := policy.Status.Discovered; s.Users != 2 || s.Pending != 0 {
			return fmt.Errorf("discovered %+v", s)
		}
		if r := policy.Status.RecentAddresses; len(r) != 2 || r[0].State != snapshot.DiscoveredUser || r[0].Reason != discoverystate.ReasonThreshold {
			return fmt.Errorf("recent %+v", r)
		}
		return nil
	})

	// The spec starts listing bob: discovery forgets him.
	md := &relayv1alpha1.MailDomain{ObjectMeta: objectMeta(ns, "main")}
	update(t, md, func(md *relayv1alpha1.MailDomain) {
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: at("bob")})
	})
	stateWhere(t, ns, "learn", "the spec wins", func(st discoverystate.State) error { return wantAddress(st, at("bob"), "", 0) })

	// A verified address that never receives enough mail expires.
	publish(t, relay2, "journal-b", discoverystate.Observation{Seq: 2, Kind: discoverystate.Verified, Address: at("carl"), Time: now})
	stateWhere(t, ns, "learn", "carl is pending", func(st discoverystate.State) error {
		return wantAddress(st, at("carl"), snapshot.DiscoveredPending, 0)
	})
	discoveryClock.SetTime(discoveryClock.Now().Add(22 * 24 * time.Hour))
	stateWhere(t, ns, "learn", "carl expired", func(st discoverystate.State) error {
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

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// The weekly report: at the scheduled slot an Event and one mail through the relay's
// submission port (with the operator's own credential), never twice for a slot.
func TestDiscoveryWeeklyReport(t *testing.T) {
	ensureRelayCA(t)
	discoveryClock.SetTime(time.Now()) // earlier tests moved it weeks ahead
	ns := newNamespace(t, "report")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "boss@"+domain))
	policy := discoveryPolicy(ns, "learn", 1, "main")
	policy.Spec.ReportRecipients = []string{"boss@" + domain}
	create(t, policy)
	// The first report covers what happened since the policy's creation, which the API
	// server stamps: bring the clock there.
	discoveryClock.SetTime(time.Now())
	publish(t, "relay-"+ns, "journal-"+ns, discoverystate.Observation{Seq: 1, Kind: discoverystate.Delivered,
		Address: "newbie@" + domain, Time: discoveryClock.Now().UTC().Truncate(time.Second)})
	waitAck(t, "relay-"+ns, "journal-"+ns+"/1")
	stateWhere(t, ns, "learn", "newbie is a user", func(st discoverystate.State) error {
		return wantAddress(st, "newbie@"+domain, snapshot.DiscoveredUser, 0)
	})
	reportsTo := func() []sunkMessage {
		var out []sunkMessage
		for _, m := range sink.messages() {
			if slices.Contains(m.to, "boss@"+domain) {
				out = append(out, m)
			}
		}
		return out
	}
	if n := len(reportsTo()); n != 0 {
		t.Fatalf("%d reports before the slot", n)
	}

	// Eight days on, a Monday 08:00 has passed since the policy was created.
	discoveryClock.SetTime(discoveryClock.Now().Add(8 * 24 * time.Hour))
	var mail sunkMessage
	eventually(t, "the report is mailed", func() error {
		got := reportsTo()
		if len(got) == 0 {
			return fmt.Errorf("no report yet")
		}
		mail = got[0]
		return nil
	})
	for _, want := range []string{"From: Postwarden <postmaster@" + domain + ">", "To: boss@" + domain, "Auto-Submitted: auto-generated",
		"Message-ID: <", "Date: ", "Subject: SMTP Discovery report for " + ns + "/learn: 1 new user, 0 new aliases", "newbie@" + domain} {
		if !strings.Contains(mail.data, want) {
			t.Errorf("the report lacks %q:\n%s", want, mail.data)
		}
	}
	if mail.from != "postmaster@"+domain || mail.user != "postwarden-discovery-report" {
		t.Errorf("sent as %s by %s", mail.from, mail.user)
	}
	eventually(t, "the report is an Event and in status", func() error {
		if err := get(t, policy); err != nil {
			return err
		}
		if policy.Status.LastReportTime == nil {
			return fmt.Errorf("no lastReportTime")
		}
		var events eventsv1.EventList
		if err := k8s.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == relayv1alpha1.EventDiscoveryReport && e.Regarding.Name == "learn" && strings.Contains(e.Note, "1 new user") {
				return nil
			}
		}
		return fmt.Errorf("no DiscoveryReport Event among %d", len(events.Items))
	})
	// Many passes later (100 ms each), and after a restart, still one mail for the slot.
	time.Sleep(time.Second)
	stopRunningOperator()
	if err := startOperator(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := len(reportsTo()); n != 1 {
		t.Fatalf("%d reports for one slot", n)
	}
	// A week later, the next one; the relay defers it at first.
	sink.refuse.Store(true)
	discoveryClock.SetTime(discoveryClock.Now().Add(7 * 24 * time.Hour))
	eventually(t, "a Warning Event says the mail failed", func() error {
		var events eventsv1.EventList
		if err := k8s.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == relayv1alpha1.EventDiscoveryReportFailed && e.Type == corev1.EventTypeWarning && strings.Contains(e.Note, "451") {
				return nil
			}
		}
		return fmt.Errorf("no DiscoveryReportFailed Event")
	})
	sink.refuse.Store(false)
	eventually(t, "the next week's report", func() error {
		if n := len(reportsTo()); n != 2 {
			return fmt.Errorf("%d reports", n)
		}
		return nil
	})
	if !strings.Contains(reportsTo()[1].data, "0 new users") {
		t.Errorf("the second report lists users again:\n%s", reportsTo()[1].data)
	}
}

// ensureRelayCA puts the sink's CA into the relay certificate's Secret, where the
// operator finds the CA to verify the relay with.
func ensureRelayCA(t *testing.T) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: objectMeta(operatorNS, "postwarden-relay-tls"), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key"), "ca.crt": sink.caPEM}}
	if err := k8s.Create(context.Background(), s); apierrors.IsAlreadyExists(err) {
		update(t, s, func(s *corev1.Secret) { s.Data["ca.crt"] = sink.caPEM })
	} else if err != nil {
		t.Fatal(err)
	}
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
