package controllers

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// relaysReconciler reads the relay status Leases: which replicas are live and which
// snapshot each enforces. When that changes, every object's Ready is recomputed.
type relaysReconciler struct {
	client   client.Client
	recorder recorder.EventRecorder
	opts     OperatorOptions
	view     *relayTracker
	notifier *notifier
	now      func() time.Time
	// told remembers which login failures were told to a MailDomain, and when.
	told map[string]time.Time
	// limitHits is owned here: the latest sending-limit refusal told per credential;
	// so is usage, the credentials' summed usage.
	limitHits *limitHitTracker
	usage     *usageTracker
}

// maxRelayRecheck bounds the wait before a Lease is looked at again.
const maxRelayRecheck = time.Minute

func (r *relaysReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var leases coordinationv1.LeaseList
	if err := r.client.List(ctx, &leases, client.InNamespace(r.opts.Namespace),
		client.MatchingLabels{snapshot.LabelRelayStatus: "true"}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing relay status Leases: %w", err)
	}
	now := r.now()
	live := 0
	var hashes []string
	var failures []relayLoginFailure
	var hits []relayLimitHit
	var usage []snapshot.CredentialUsage
	var next time.Duration
	for i := range leases.Items {
		expires, ok := snapshot.LeaseExpiry(&leases.Items[i])
		if !ok || !expires.After(now) {
			continue
		}
		live++
		hashes = append(hashes, leases.Items[i].Annotations[snapshot.AnnotationHash])
		failures = append(failures, loginFailuresOf(&leases.Items[i])...)
		hits = append(hits, limitHitsOf(&leases.Items[i])...)
		usage = append(usage, usageOf(&leases.Items[i])...)
		if d := expires.Sub(now); next == 0 || d < next {
			next = d
		}
	}
	before := r.view.current().Live
	r.notifier.notify(ctx, r.view.set(live, hashes))
	if live != before {
		// Each live relay enforces its share of the credentials' sending limits: the
		// shares change with the count.
		r.notifier.render()
	}
	if err := r.tellLoginFailures(ctx, failures, now); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.tellLimitHits(ctx, hits, now); err != nil {
		return ctrl.Result{}, err
	}
	r.notifier.notify(ctx, r.usage.set(usage, now))
	if next == 0 {
		return ctrl.Result{}, nil
	}
	// Look again when the first Lease would expire, unless it is renewed before.
	return ctrl.Result{RequeueAfter: min(next+100*time.Millisecond, maxRelayRecheck)}, nil
}
