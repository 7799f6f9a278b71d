package discovery

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
)

// writeDiscoveryStatus writes the discovery part of a policy's status: counts, the
// most recently changed addresses, where the full list is, and (when merged is set)
// lastMergeTime. The status reconciler writes conditions and mailDomains; both patch
// only the fields they own, so they never undo each other.
func (r *reconciler) writeDiscoveryStatus(ctx context.Context, obj *relayv1alpha1.DiscoveryPolicy,
	stored *storedState, merged bool, now time.Time) error {
	before := obj.DeepCopy()
	s := &obj.Status
	c := stored.state.Counts()
	s.Discovered = relayv1alpha1.DiscoveryCounts{Pending: int32(c.Pending), Users: int32(c.Users), Aliases: int32(c.Aliases), Invalid: int32(c.Invalid)}
	s.RecentAddresses = statusAddresses(stored.state.Recent(recentAddresses))
	s.StateConfigMaps = stored.names()
	s.CatchAllDomains = stored.state.CatchAllDomains()
	s.LimitedDomains = stored.state.LimitedDomains(int(obj.Spec.MaxAddressesPerDomain))
	if merged || s.LastMergeTime == nil && len(stored.state.Addresses) > 0 {
		t := metav1.NewTime(now.UTC().Truncate(time.Second))
		s.LastMergeTime = &t
	}
	for _, d := range added(before.Status.CatchAllDomains, s.CatchAllDomains) {
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, relayv1alpha1.EventDiscoveryCatchAll, "Merge",
			"the mail server of %s accepted a random address no one has: discovery learns no new address of %s until it refuses unknown recipients", d, d)
	}
	for _, d := range added(before.Status.LimitedDomains, s.LimitedDomains) {
		r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, relayv1alpha1.EventDiscoveryLimitReached, "Merge",
			"%s has as many discovered users and aliases as maxAddressesPerDomain allows: no further address of it is discovered", d)
	}
	if equality.Semantic.DeepEqual(before.Status, obj.Status) {
		return nil
	}
	if err := r.client.Status().Patch(ctx, obj, client.MergeFrom(before), client.FieldOwner(r.opts.FieldOwner)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("writing the discovery status of %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

// added returns what is in after and not in before.
func added(before, after []string) []string {
	var out []string
	for _, s := range after {
		if !slices.Contains(before, s) {
			out = append(out, s)
		}
	}
	return out
}

func statusAddresses(as []dstate.Address) []relayv1alpha1.DiscoveredAddress {
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
