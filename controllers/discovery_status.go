package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/discoverystate"
)

// writeDiscoveryStatus writes the discovery part of a policy's status: counts, the
// most recently changed addresses, where the full list is, and (when merged is set)
// lastMergeTime. The status reconciler writes conditions and mailDomains; both patch
// only the fields they own, so they never undo each other.
func (r *discoveryReconciler) writeDiscoveryStatus(ctx context.Context, obj *relayv1alpha1.DiscoveryPolicy,
	stored *storedState, merged bool, now time.Time) error {
	before := obj.DeepCopy()
	s := &obj.Status
	c := stored.state.Counts()
	s.Discovered = relayv1alpha1.DiscoveryCounts{Pending: int32(c.Pending), Users: int32(c.Users), Aliases: int32(c.Aliases), Invalid: int32(c.Invalid)}
	s.RecentAddresses = statusAddresses(stored.state.Recent(recentAddresses))
	s.StateConfigMaps = stored.names()
	if merged || s.LastMergeTime == nil && len(stored.state.Addresses) > 0 {
		t := metav1.NewTime(now.UTC().Truncate(time.Second))
		s.LastMergeTime = &t
	}
	if equality.Semantic.DeepEqual(before.Status, obj.Status) {
		return nil
	}
	if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(before), client.FieldOwner(fieldOwner)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("writing the discovery status of %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

func statusAddresses(as []discoverystate.Address) []relayv1alpha1.DiscoveredAddress {
	if len(as) == 0 {
		return nil
	}
	out := make([]relayv1alpha1.DiscoveredAddress, 0, len(as))
	for _, a := range as {
		out = append(out, relayv1alpha1.DiscoveredAddress{Address: a.Address, State: a.State, Target: a.Target,
			Reason: a.Reason, Since: metav1.NewTime(a.Since.UTC().Truncate(time.Second))})
	}
	return out
}
