package controllers

import (
	"context"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A relay reports on its status Lease the credentials it refused for a sending limit
// lately (snapshot.AnnotationLimitHits). The relays reconciler tells each
// SMTPCredential's owner with a Warning Event, once per limit within tellAgainAfter: a
// credential that suddenly hits its limits is what a leaked password looks like.

// limitHitTracker holds the latest refusal told for each SMTPCredential: the relays
// reconciler writes it, the SMTPCredential reconciler copies it into status.
type limitHitTracker struct {
	mu   sync.Mutex
	hits map[types.NamespacedName]relayLimitHit
}

func (t *limitHitTracker) set(name types.NamespacedName, h relayLimitHit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hits == nil {
		t.hits = map[types.NamespacedName]relayLimitHit{}
	}
	if cur, ok := t.hits[name]; !ok || h.At.After(cur.At) {
		t.hits[name] = h
	}
}

// setLimitReached writes the latest refusal told into the credential's status, unless
// status already holds a later one (a restarted operator has told nothing yet).
func (t *limitHitTracker) setLimitReached(s *relayv1alpha1.SMTPCredentialStatus, name types.NamespacedName) {
	t.mu.Lock()
	h, ok := t.hits[name]
	t.mu.Unlock()
	if !ok || s.LimitReached != nil && !h.At.After(s.LimitReached.At.Time) {
		return
	}
	s.LimitReached = &relayv1alpha1.LimitReached{Limit: h.Limit, At: metav1.NewTime(h.At.UTC().Truncate(time.Second)), Relay: h.relay}
}

// relayLimitHit is a refusal and the replica that reported it.
type relayLimitHit struct {
	snapshot.LimitHit
	relay string
}

// limitHitsOf decodes a Lease's report of sending-limit refusals.
func limitHitsOf(l *coordinationv1.Lease) []relayLimitHit {
	var out []relayLimitHit
	for _, h := range leaseReport[snapshot.LimitHit](l, snapshot.AnnotationLimitHits, snapshot.MaxLimitHits) {
		out = append(out, relayLimitHit{LimitHit: h, relay: holderOf(l)})
	}
	return out
}

// tellLimitHits sends an Event to the SMTPCredential of each reported refusal, once per
// credential and limit within tellAgainAfter (whichever relays report it). A report
// names the credential; one whose username is not the credential's is ignored.
func (r *relaysReconciler) tellLimitHits(ctx context.Context, hits []relayLimitHit, now time.Time) error {
	if r.recorder == nil {
		return nil
	}
	for _, h := range hits {
		key := "limit\x00" + h.Credential.String() + "\x00" + h.Limit
		if !r.told[key].IsZero() || now.Sub(h.At) > tellAgainAfter {
			continue
		}
		var cred relayv1alpha1.SMTPCredential
		if err := r.client.Get(ctx, client.ObjectKey{Namespace: h.Credential.Namespace, Name: h.Credential.Name}, &cred); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return err
			}
			continue
		}
		if cred.Status.Username != h.Username {
			continue
		}
		r.told[key] = now
		name := client.ObjectKeyFromObject(&cred)
		r.limitHits.set(name, h)
		r.notifier.notify(ctx, []compiler.ObjectKey{{Kind: compiler.KindSMTPCredential, Namespace: name.Namespace, Name: name.Name}})
		r.recorder.Eventf(&cred, nil, corev1.EventTypeWarning, relayv1alpha1.ReasonSendingLimitReached, "Send",
			"relay %s refused mail of %s for its sending limit %s; if this credential does not usually send this much, its password may have leaked: rotate it (spec.rotationToken)",
			h.relay, h.Username, h.Limit)
		logf.FromContext(ctx).Info("a credential reached a sending limit", "smtpCredential", h.Credential.String(),
			"limit", h.Limit, "relay", h.relay)
	}
	return nil
}
