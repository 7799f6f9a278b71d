package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// What two relays report of a credential's last 24 hours is added up into its status,
// as a share of its daily limit (2,500 by default), written when it moved by a tenth of
// that limit; a credential no relay reports any more loses its usage.
func TestCredentialUsageIsTheSumOfTheRelaysReports(t *testing.T) {
	ctx := context.Background()
	cred, secret := issuedCredential(t, "usage")
	user := string(secret.Data["username"])
	report := func(messages int) string {
		data, err := json.Marshal([]snapshot.CredentialUsage{{Credential: snapshot.ObjectRef{Namespace: cred.Namespace, Name: cred.Name},
			Username: user, Messages: messages, Recipients: 2 * messages}})
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	var leases []*coordinationv1.Lease
	for _, pod := range []string{"a", "b"} {
		holder, seconds, now := "relay-usage-"+pod+"-"+cred.Namespace, int32(60), metav1.NewMicroTime(time.Now())
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: snapshot.LeasePrefix + holder,
				Labels:      map[string]string{snapshot.LabelRelayStatus: "true"},
				Annotations: map[string]string{snapshot.AnnotationHash: "unknown", snapshot.AnnotationCredentialUsage: report(600)}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, RenewTime: &now},
		}
		create(t, lease)
		t.Cleanup(func() { _ = k8s.Delete(ctx, lease) })
		leases = append(leases, lease)
	}
	usage := func(messages, recipients, percent int32) func() error {
		return func() error {
			if err := get(t, cred); err != nil {
				return err
			}
			u := cred.Status.Usage
			if u == nil || u.Messages24h != messages || u.Recipients24h != recipients || u.PercentOfDailyLimit != percent || u.ObservedAt == nil {
				return fmt.Errorf("status.usage %+v", u)
			}
			return nil
		}
	}
	eventually(t, "status.usage is the sum of both reports", usage(1200, 2400, 48))

	update(t, leases[0], func(l *coordinationv1.Lease) { l.Annotations[snapshot.AnnotationCredentialUsage] = report(1000) })
	eventually(t, "a move of more than a tenth of the daily limit is written", usage(1600, 3200, 64))

	for _, l := range leases {
		update(t, l, func(l *coordinationv1.Lease) { delete(l.Annotations, snapshot.AnnotationCredentialUsage) })
	}
	eventually(t, "a credential no relay reports loses its usage", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		if cred.Status.Usage != nil {
			return fmt.Errorf("status.usage %+v", cred.Status.Usage)
		}
		return nil
	})
}
