package controllers

import (
	"context"
	"encoding/json"
	"strings"
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

// leaseReport decodes the JSON list a relay reports in annotation of its Lease, at most
// limit entries; a report that does not decode is ignored (the relay writes it; a newer
// relay may write more).
func leaseReport[T any](l *coordinationv1.Lease, annotation string, limit int) []T {
	data := l.Annotations[annotation]
	if data == "" {
		return nil
	}
	var items []T
	if err := json.Unmarshal([]byte(data), &items); err != nil {
		return nil
	}
	return items[:min(len(items), limit)]
}

// loginFailuresOf decodes a Lease's report of failed logins.
func loginFailuresOf(l *coordinationv1.Lease) []relayLoginFailure {
	var out []relayLoginFailure
	for _, f := range leaseReport[snapshot.LoginFailure](l, snapshot.AnnotationLoginFailures, snapshot.MaxLoginFailures) {
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
// hop and reason within tellAgainAfter. The hop's MailDomain is read from the
// annotation the operator wrote on its copy: a relay names only copies, and a name
// that is not one of the operator's copies tells no one.
func (r *relaysReconciler) tellLoginFailures(ctx context.Context, failures []relayLoginFailure, now time.Time) error {
	for key, at := range r.told {
		if now.Sub(at) > tellAgainAfter {
			delete(r.told, key)
		}
	}
	if r.recorder == nil {
		return nil
	}
	for _, f := range failures {
		key := f.AuthSecret + "\x00" + f.Reason
		if !r.told[key].IsZero() {
			continue
		}
		md, hop, err := r.hopOf(ctx, f.AuthSecret)
		if err != nil {
			return err
		}
		if md == nil {
			continue
		}
		r.told[key] = now
		field := compiler.RelaySecret{Hop: hop}.Field()
		r.recorder.Eventf(md, nil, corev1.EventTypeWarning, relayv1alpha1.ReasonRouteLoginFailed, "Deliver",
			"relay %s could not log in on %s (%s): %s; its mail is deferred until the login works", f.relay, field, f.Host, f.Reason)
		logf.FromContext(ctx).Info("a relay could not log in on a MailDomain's route", "mailDomain", client.ObjectKeyFromObject(md),
			"hop", field, "relay", f.relay, "host", f.Host)
	}
	return nil
}

// hopOf returns the MailDomain and hop of the copy named name, from the metadata cache;
// nil when there is no such copy or MailDomain.
func (r *relaysReconciler) hopOf(ctx context.Context, name string) (*relayv1alpha1.MailDomain, string, error) {
	c := secretMeta()
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: r.opts.Namespace, Name: name}, c); err != nil {
		return nil, "", client.IgnoreNotFound(err)
	}
	ref, hop, ok := strings.Cut(c.Annotations[annotationRouteMailDomain], " ")
	ns, mdName, ok2 := strings.Cut(ref, "/")
	if c.Labels[snapshot.LabelRelaySecret] != "true" || !ok || !ok2 {
		return nil, "", nil
	}
	var md relayv1alpha1.MailDomain
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: mdName}, &md); err != nil {
		return nil, "", client.IgnoreNotFound(err)
	}
	if compiler.RouteSecretName(md.Namespace, md.Name, hop) != name {
		return nil, "", nil // an annotation the operator did not write
	}
	return &md, hop, nil
}
