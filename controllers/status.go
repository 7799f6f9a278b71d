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
)

// setConditions writes Accepted and Ready from what the last render decided and what
// the relays report.
//
// Accepted=True: the object is in the written snapshot. Ready=True (Enforced): every
// live relay replica reports a snapshot at least as new as the first one that held the
// object's current content. With no live replica, nothing is enforced.
func setConditions(conds *[]metav1.Condition, generation int64, st objectStatus) {
	v := st.verdict
	accepted := metav1.Condition{Type: relayv1alpha1.ConditionAccepted, ObservedGeneration: generation,
		Status: metav1.ConditionFalse, Reason: v.Reason, Message: v.Message}
	ready := accepted
	ready.Type = relayv1alpha1.ConditionReady
	if v.Accepted {
		accepted.Status = metav1.ConditionTrue
		switch {
		case st.enforced:
			ready.Status, ready.Reason = metav1.ConditionTrue, relayv1alpha1.ReasonEnforced
			ready.Message = fmt.Sprintf("every live relay replica enforces config %s or newer", short(st.firstHash))
		case st.relays.Live == 0:
			ready.Reason = relayv1alpha1.ReasonPropagating
			ready.Message = fmt.Sprintf("config %s is written; no live relay replica reports what it enforces", short(st.firstHash))
		default:
			ready.Reason = relayv1alpha1.ReasonPropagating
			ready.Message = fmt.Sprintf("config %s is written; not every live relay replica has applied it yet", short(st.firstHash))
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

// writeStatus patches obj's status when it differs from before's, and sends a Warning
// Event when the object has just been left out of the relay config.
func writeStatus(ctx context.Context, c client.Client, rec recorder.EventRecorder, obj, before client.Object,
	status, beforeStatus any, conds, beforeConds []metav1.Condition) error {
	if equality.Semantic.DeepEqual(status, beforeStatus) {
		return nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("writing status: %w", err)
	}
	if cond, ok := acceptedFlipped(beforeConds, conds); ok && rec != nil {
		rec.Eventf(obj, nil, corev1.EventTypeWarning, cond.Reason, "Compile", "left out of the relay config: %s", cond.Message)
	}
	return nil
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
