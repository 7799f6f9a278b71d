package controllers

import (
	"context"
	"encoding/json"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A relay reports on its status Lease the credentials it refused for a sending limit
// lately (snapshot.AnnotationLimitHits). The relays reconciler tells each
// SMTPCredential's owner with a Warning Event, once per limit within tellAgainAfter: a
// credential that suddenly hits its limits is what a leaked password looks like.

// relayLimitHit is a refusal and the replica that reported it.
type relayLimitHit struct {
	snapshot.LimitHit
	relay string
}

// limitHitsOf decodes a Lease's report; one that does not decode is ignored.
func limitHitsOf(l *coordinationv1.Lease) []relayLimitHit {
	data := l.Annotations[snapshot.AnnotationLimitHits]
	if data == "" {
		return nil
	}
	var hits []snapshot.LimitHit
	if err := json.Unmarshal([]byte(data), &hits); err != nil {
		return nil
	}
	out := make([]relayLimitHit, 0, min(len(hits), snapshot.MaxLimitHits))
	for _, h := range hits[:min(len(hits), snapshot.MaxLimitHits)] {
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
		r.recorder.Eventf(&cred, nil, corev1.EventTypeWarning, relayv1alpha1.ReasonSendingLimitReached, "Send",
			"relay %s refused mail of %s for its sending limit %s; if this credential does not usually send this much, its password may have leaked: rotate it (spec.rotationToken)",
			h.relay, h.Username, h.Limit)
		logf.FromContext(ctx).Info("a credential reached a sending limit", "smtpCredential", h.Credential.String(),
			"limit", h.Limit, "relay", h.relay)
	}
	return nil
}
