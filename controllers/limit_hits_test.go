package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A relay that refused a credential for a sending limit says so on its status Lease;
// the operator tells the SMTPCredential's owner with one Warning Event, and ignores a
// report whose username is not the credential's.
func TestSendingLimitHitsBecomeOneEvent(t *testing.T) {
	ctx := context.Background()
	cred, secret := issuedCredential(t, "limits")
	user := string(secret.Data["username"])
	if err := get(t, cred); err != nil {
		t.Fatal(err)
	}
	ref := snapshot.ObjectRef{Namespace: cred.Namespace, Name: cred.Name}
	hits, err := json.Marshal([]snapshot.LimitHit{
		{Credential: ref, Username: user, Limit: "messages_per_window", At: time.Now().UTC()},
		{Credential: ref, Username: "someone-else@elsewhere.example", Limit: "messages_per_day", At: time.Now().UTC()},
	})
	if err != nil {
		t.Fatal(err)
	}
	var leases []*coordinationv1.Lease
	for _, pod := range []string{"a", "b"} { // two relays report the same credential
		holder, seconds, now := "relay-limits-"+pod+"-"+cred.Namespace, int32(60), metav1.NewMicroTime(time.Now())
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: snapshot.LeasePrefix + holder,
				Labels:      map[string]string{snapshot.LabelRelayStatus: "true"},
				Annotations: map[string]string{snapshot.AnnotationHash: "unknown", snapshot.AnnotationLimitHits: string(hits)}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, RenewTime: &now},
		}
		create(t, lease)
		t.Cleanup(func() { _ = k8s.Delete(ctx, lease) })
		leases = append(leases, lease)
	}
	notes := func(limit string) []string {
		var events eventsv1.EventList
		if err := k8s.List(ctx, &events, client.InNamespace(cred.Namespace)); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range events.Items {
			if e.Reason == relayv1alpha1.ReasonSendingLimitReached && strings.Contains(e.Note, "sending limit "+limit) {
				out = append(out, e.Note)
			}
		}
		return out
	}
	eventually(t, "an Event for the window limit", func() error {
		if len(notes("messages_per_window")) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	// A usage report on the same Leases marks a later reconcile: once status shows the
	// usage, the hits were read again, and must not have been told again. (Events of
	// one object, reason and action form one series: a second telling, or a telling of
	// the other username's hit, would make it a series.)
	usageReport, err := json.Marshal([]snapshot.CredentialUsage{{Credential: ref, Username: user, Messages: 7, Recipients: 7}})
	if err != nil {
		t.Fatal(err)
	}
	update(t, leases[0], func(l *coordinationv1.Lease) { l.Annotations[snapshot.AnnotationCredentialUsage] = string(usageReport) })
	eventually(t, "the later reconcile shows in status.usage", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		if cred.Status.Usage == nil || cred.Status.Usage.Messages24h != 7 {
			return fmt.Errorf("status.usage %+v", cred.Status.Usage)
		}
		return nil
	})
	var events eventsv1.EventList
	if err := k8s.List(ctx, &events, client.InNamespace(cred.Namespace)); err != nil {
		t.Fatal(err)
	}
	var told []eventsv1.Event
	for _, e := range events.Items {
		if e.Reason == relayv1alpha1.ReasonSendingLimitReached {
			told = append(told, e)
		}
	}
	if len(told) != 1 || told[0].Series != nil {
		t.Fatalf("want one Event, told once: %+v", told)
	}
	if want := "refused mail of " + user + " for its sending limit messages_per_window"; !strings.Contains(told[0].Note, want) {
		t.Errorf("Event %q, want it to say %q", told[0].Note, want)
	}
	eventually(t, "kubectl get shows the last limit reached", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		if l := cred.Status.LimitReached; l == nil || l.Limit != "messages_per_window" || !strings.HasPrefix(l.Relay, "relay-limits-") {
			return fmt.Errorf("status.limitReached %+v", l)
		}
		return nil
	})
}
