package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// acknowledge sets each batch's acknowledgement to its highest seq, once every policy it
// concerns has merged it. Observations of no policy's domains are acknowledged too:
// nothing will ever merge them.
func (r *reconciler) acknowledge(ctx context.Context, batches []*batchCM) error {
	var errs []error
	for _, b := range batches {
		if b.blocked || len(b.batch.Observations) == 0 {
			continue
		}
		var high uint64
		for _, o := range b.batch.Observations {
			high = max(high, o.Seq)
		}
		want := discoverystate.AckValue(b.batch.Journal, high)
		if b.cm.Annotations[discoverystate.AnnotationAcked] == want {
			continue
		}
		patched := b.cm.DeepCopy()
		if patched.Annotations == nil {
			patched.Annotations = map[string]string{}
		}
		patched.Annotations[discoverystate.AnnotationAcked] = want
		if err := r.client.Patch(ctx, patched, client.MergeFrom(b.cm), client.FieldOwner(r.opts.FieldOwner)); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("acknowledging %s: %w", b.cm.Name, err))
		}
	}
	return errors.Join(errs...)
}

// collectGarbage deletes the observations ConfigMap of a relay replica gone for good:
// its Lease expired (or vanished) more than Options.GCAfter ago, and everything it
// published is acknowledged. The delete is conditional on the ConfigMap not having
// changed since it was read.
func (r *reconciler) collectGarbage(ctx context.Context, batches []*batchCM, now time.Time) error {
	var errs []error
	seen := map[string]bool{}
	for _, b := range batches {
		seen[b.cm.Name] = true
		pod := strings.TrimPrefix(b.cm.Name, discoverystate.ObservationsPrefix)
		var gone time.Time
		var lease coordinationv1.Lease
		err := r.client.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: snapshot.LeasePrefix + pod}, &lease)
		switch {
		case err == nil:
			delete(r.absentSince, b.cm.Name)
			expires, ok := snapshot.LeaseExpiry(&lease)
			if !ok {
				continue
			}
			gone = expires
		case apierrors.IsNotFound(err):
			if r.absentSince == nil {
				r.absentSince = map[string]time.Time{}
			}
			if _, ok := r.absentSince[b.cm.Name]; !ok {
				r.absentSince[b.cm.Name] = now
			}
			gone = r.absentSince[b.cm.Name]
		default:
			errs = append(errs, err)
			continue
		}
		if now.Sub(gone) < r.opts.GCAfter || !fullyAcked(b) {
			continue
		}
		pre := client.Preconditions{UID: &b.cm.UID, ResourceVersion: &b.cm.ResourceVersion}
		if err := r.client.Delete(ctx, b.cm, pre); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting the observations of relay %s: %w", pod, err))
			continue
		}
		logf.FromContext(ctx).Info("deleted the discovery observations of a relay gone for good", "relay", pod)
	}
	for name := range r.absentSince {
		if !seen[name] {
			delete(r.absentSince, name)
		}
	}
	return errors.Join(errs...)
}

// stateGCInterval is how often collectStates looks for states of deleted policies.
const stateGCInterval = 5 * time.Minute

// fullyAcked reports whether the operator has acknowledged every observation of b.
func fullyAcked(b *batchCM) bool {
	journal, seq, ok := discoverystate.ParseAck(b.cm.Annotations[discoverystate.AnnotationAcked])
	for _, o := range b.batch.Observations {
		if !ok || journal != b.batch.Journal || o.Seq > seq {
			return false
		}
	}
	return true
}

// collectStates deletes the state ConfigMaps of DiscoveryPolicies that no longer exist.
// They live in the operator's namespace, so no owner reference can do it; a policy that
// is only disabled or rejected keeps its state. The policy is looked up past the cache,
// so a policy the cache has not seen yet is never taken for a deleted one; that costs a
// read per policy, so it runs at most every stateGCInterval.
func (r *reconciler) collectStates(ctx context.Context, now time.Time) error {
	if !r.lastStateGC.IsZero() && now.Sub(r.lastStateGC) < stateGCInterval {
		return nil
	}
	r.lastStateGC = now
	var list corev1.ConfigMapList
	if err := r.client.List(ctx, &list, client.InNamespace(r.opts.Namespace), client.MatchingLabelsSelector{Selector: StateSelector()}); err != nil {
		return fmt.Errorf("listing discovery state ConfigMaps: %w", err)
	}
	var errs []error
	exists := map[string]bool{}
	for i := range list.Items {
		cm := &list.Items[i]
		policy := cm.Annotations[dstate.AnnotationPolicy]
		ns, name, ok := strings.Cut(policy, "/")
		if !ok {
			continue // not written by this release's operator
		}
		found, seen := exists[policy]
		if !seen {
			var p relayv1alpha1.DiscoveryPolicy
			err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &p)
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			found = err == nil
			exists[policy] = found
		}
		if found {
			continue
		}
		pre := client.Preconditions{UID: &cm.UID, ResourceVersion: &cm.ResourceVersion}
		if err := r.client.Delete(ctx, cm, pre); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting the discovery state %s of deleted policy %s: %w", cm.Name, policy, err))
			continue
		}
		logf.FromContext(ctx).Info("deleted the discovery state of a deleted policy", "policy", policy, "configMap", cm.Name)
	}
	return errors.Join(errs...)
}
