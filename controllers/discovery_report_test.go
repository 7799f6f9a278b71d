package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

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
	stateWhere(t, ns, "learn", "newbie is a user", func(st dstate.State) error {
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
	// Later passes, and passes after a restart, still send one mail for the slot. A pass
	// is proven, not waited for: an observation of no policy's domain is acknowledged in
	// a pass before its report phase, so a second acknowledgement means the pass of the
	// first, report phase included, is over.
	seq := uint64(1)
	passes := func() {
		for range 2 {
			seq++
			publish(t, "relay-"+ns, "journal-"+ns, discoverystate.Observation{Seq: seq, Kind: discoverystate.Delivered,
				Address: "someone@elsewhere.example", Time: discoveryClock.Now().UTC().Truncate(time.Second)})
			waitAck(t, "relay-"+ns, fmt.Sprintf("journal-%s/%d", ns, seq))
		}
	}
	passes()
	stopRunningOperator()
	if err := startOperator(); err != nil {
		t.Fatal(err)
	}
	passes()
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
