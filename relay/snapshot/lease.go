package snapshot

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// LeaseExpiry is when a relay replica's status Lease expires: renewTime +
// leaseDurationSeconds. False when either is missing: a Lease never renewed, or
// without a duration, is not a live replica's.
func LeaseExpiry(l *coordinationv1.Lease) (time.Time, bool) {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return time.Time{}, false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second), true
}
