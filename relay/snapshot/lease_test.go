package snapshot

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLeaseExpiry(t *testing.T) {
	at := metav1.NewMicroTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := int32(10)
	cases := map[string]struct {
		spec coordinationv1.LeaseSpec
		ok   bool
	}{
		"renewTime plus duration":                {coordinationv1.LeaseSpec{RenewTime: &at, LeaseDurationSeconds: &d}, true},
		"a Lease never renewed is not live":      {coordinationv1.LeaseSpec{LeaseDurationSeconds: &d}, false},
		"a Lease without a duration is not live": {coordinationv1.LeaseSpec{RenewTime: &at}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			exp, ok := LeaseExpiry(&coordinationv1.Lease{Spec: c.spec})
			if ok != c.ok || ok && !exp.Equal(at.Add(10*time.Second)) {
				t.Errorf("got %v, %v", exp, ok)
			}
		})
	}
}
