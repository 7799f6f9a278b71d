package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// setConditions writes Accepted and Ready from what the last render decided and what
// the relays report.
//
// Accepted=True: the object is in the written snapshot. Ready=True (Enforced): every
// live relay replica reports a snapshot at least as new as the first one that held the
// object's current content. With no live replica, nothing is enforced.
// objectStatus is what a per-kind reconciler needs to write an object's status.
type objectStatus struct {
	verdict   compiler.Verdict
	firstHash string
	// readiness is what the relays enforce of an accepted object.
	readiness readiness
	cert      certView
}

// statusViews joins, read-only, what the config reconciler, the relays reconciler and
// the certificate manager each own, for the per-kind reconcilers.
type statusViews struct {
	ledger *renderLedger
	relays *relayTracker
	cert   *certTracker
}

// status returns the object's status inputs, or false when the last render has not
// seen generation yet.
func (v statusViews) status(key compiler.ObjectKey, generation int64) (objectStatus, bool) {
	o, ok := v.ledger.object(key, generation)
	if !ok {
		return objectStatus{}, false
	}
	return objectStatus{verdict: *o.verdict, firstHash: o.firstHash,
		readiness: readinessOf(o.firstSeq, v.relays.current()), cert: v.cert.current()}, true
}

func setConditions(conds *[]metav1.Condition, generation int64, st objectStatus) {
	v := st.verdict
	accepted := metav1.Condition{Type: relayv1alpha1.ConditionAccepted, ObservedGeneration: generation,
		Status: metav1.ConditionFalse, Reason: v.Reason, Message: v.Message}
	ready := accepted
	ready.Type = relayv1alpha1.ConditionReady
	if v.Accepted {
		accepted.Status = metav1.ConditionTrue
		switch st.readiness {
		case enforcedEverywhere:
			ready.Status, ready.Reason = metav1.ConditionTrue, relayv1alpha1.ReasonEnforced
			ready.Message = fmt.Sprintf("every live relay replica enforces config %s or newer", snapshot.ShortHash(st.firstHash))
		case noLiveRelay:
			ready.Reason = relayv1alpha1.ReasonPropagating
			ready.Message = fmt.Sprintf("config %s is written; no live relay replica reports what it enforces", snapshot.ShortHash(st.firstHash))
		default:
			ready.Reason = relayv1alpha1.ReasonPropagating
			ready.Message = fmt.Sprintf("config %s is written; not every live relay replica has applied it yet", snapshot.ShortHash(st.firstHash))
		}
	}
	meta.SetStatusCondition(conds, accepted)
	meta.SetStatusCondition(conds, ready)
}

// acceptedFlipped reports an object leaving the relay config, for a Warning Event.
func acceptedFlipped(before, after []metav1.Condition) (*metav1.Condition, bool) {
	now := meta.FindStatusCondition(after, relayv1alpha1.ConditionAccepted)
	if now == nil || now.Status != metav1.ConditionFalse || now.Reason == relayv1alpha1.ReasonSecretPending {
		// A credential waits for its Secret for a moment at creation: not worth a Warning.
		return nil, false
	}
	was := meta.FindStatusCondition(before, relayv1alpha1.ConditionAccepted)
	return now, was == nil || was.Status != metav1.ConditionFalse || was.Reason != now.Reason
}

// conditioned is any of the operator's kinds: each has status conditions.
type conditioned interface {
	client.Object
	GetConditions() []metav1.Condition
}

// statusWriter writes the status of any kind the same way.
type statusWriter struct {
	client   client.Client
	recorder recorder.EventRecorder
}

// write patches obj's status when it differs from before's, and sends a Warning
// Event when the object has just been left out of the relay config.
// Reconcilers change only status between before and obj, so comparing the objects
// compares status; anything else that differed would cost a patch, never lose one.
func (w statusWriter) write(ctx context.Context, obj, before conditioned) error {
	if equality.Semantic.DeepEqual(obj, before) {
		return nil
	}
	if err := w.client.Status().Patch(ctx, obj, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("writing status: %w", err)
	}
	if cond, ok := acceptedFlipped(before.GetConditions(), obj.GetConditions()); ok && w.recorder != nil {
		w.recorder.Eventf(obj, nil, corev1.EventTypeWarning, cond.Reason, "Compile", "left out of the relay config: %s", cond.Message)
	}
	return nil
}
