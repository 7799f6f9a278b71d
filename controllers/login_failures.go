package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A relay reports on its status Lease the hops whose login failed lately
// (snapshot.AnnotationLoginFailures). The relays reconciler tells each MailDomain's
// owner with a Warning Event: a wrong password otherwise shows only as mail that waits.

// tellAgainAfter is how long the same failure of the same hop stays told.
const tellAgainAfter = time.Hour

// relayLoginFailure is a failure and the replica that reported it.
type relayLoginFailure struct {
	snapshot.LoginFailure
	relay string
}

// loginFailuresOf decodes a Lease's report; a report that does not decode is ignored
// (the relay writes it; a newer relay may write more).
func loginFailuresOf(l *coordinationv1.Lease) []relayLoginFailure {
	data := l.Annotations[snapshot.AnnotationLoginFailures]
	if data == "" {
		return nil
	}
	var fs []snapshot.LoginFailure
	if err := json.Unmarshal([]byte(data), &fs); err != nil {
		return nil
	}
	out := make([]relayLoginFailure, 0, min(len(fs), snapshot.MaxLoginFailures))
	for _, f := range fs[:min(len(fs), snapshot.MaxLoginFailures)] {
		out = append(out, relayLoginFailure{LoginFailure: f, relay: holderOf(l)})
	}
	return out
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity != nil {
		return *l.Spec.HolderIdentity
	}
	return l.Name
}

// tellLoginFailures sends an Event to the MailDomain of each reported hop, once per
// hop and reason within tellAgainAfter.
func (r *relaysReconciler) tellLoginFailures(ctx context.Context, failures []relayLoginFailure, now time.Time) error {
	for key, at := range r.told {
		if now.Sub(at) > tellAgainAfter {
			delete(r.told, key)
		}
	}
	if len(failures) == 0 || r.recorder == nil {
		return nil
	}
	var domains relayv1alpha1.MailDomainList
	if err := r.client.List(ctx, &domains); err != nil {
		return fmt.Errorf("listing MailDomains: %w", err)
	}
	// The copy names are derived from the MailDomains, so only the operator's own
	// names match, and a relay cannot name an object it was not given.
	hops := map[string]struct {
		md  *relayv1alpha1.MailDomain
		hop string
	}{}
	for i := range domains.Items {
		for _, a := range compiler.RelaySecrets(&domains.Items[i]) {
			hops[a.Copy] = struct {
				md  *relayv1alpha1.MailDomain
				hop string
			}{&domains.Items[i], a.Hop}
		}
	}
	for _, f := range failures {
		h, ok := hops[f.AuthSecret]
		key := f.AuthSecret + "\x00" + f.Reason
		if !ok || !r.told[key].IsZero() {
			continue
		}
		r.told[key] = now
		field := "outboundRoute"
		if h.hop == compiler.HopInbound {
			field = "inboundDelivery"
		}
		r.recorder.Eventf(h.md, nil, corev1.EventTypeWarning, relayv1alpha1.ReasonRouteLoginFailed, "Deliver",
			"relay %s could not log in on %s (%s): %s; its mail is deferred until the login works", f.relay, field, f.Host, f.Reason)
		logf.FromContext(ctx).Info("a relay could not log in on a MailDomain's route", "mailDomain", client.ObjectKeyFromObject(h.md),
			"hop", field, "relay", f.relay, "host", f.Host)
	}
	return nil
}
