package controllers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
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
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := currentSnapshot()
			if err == nil {
				if d := findDomain(s, domain); d != nil && len(d.Users) == len(md.Spec.Users) {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("user %s did not reach the config in 30s", user)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
