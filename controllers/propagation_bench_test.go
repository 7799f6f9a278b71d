package controllers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/testkit"
)

// BenchmarkChangeReachesConfig measures the time from an edit of a MailDomain to the
// relay config Secrets holding it, through a real API server.
func BenchmarkChangeReachesConfig(b *testing.B) {
	ns := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := k8s.Create(context.Background(), namespaceObject(ns)); err != nil {
		b.Fatal(err)
	}
	domain := ns + ".example"
	md := mailDomain(ns, "main", domain, "first@"+domain)
	if err := k8s.Create(context.Background(), md); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		user := fmt.Sprintf("u%d@%s", i, domain)
		before := md.DeepCopy()
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: user})
		if err := k8s.Patch(context.Background(), md, client.MergeFrom(before)); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := testkit.Poll(ctx, 2*time.Millisecond, func() error {
			s, err := currentSnapshot()
			if err != nil {
				return err
			}
			if d := findDomain(s, domain); d == nil || len(d.Users) != len(md.Spec.Users) {
				return fmt.Errorf("user %s is not in the config", user)
			}
			return nil
		})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
}
