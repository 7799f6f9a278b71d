package controllers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// BenchmarkCredentialBurst creates 500 SMTPCredentials at once and measures the time
// until every one is issued and in the relay config: renders fold the burst.
func BenchmarkCredentialBurst(b *testing.B) {
	const n = 500
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		ns := "burst-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if err := k8s.Create(ctx, namespaceObject(ns)); err != nil {
			b.Fatal(err)
		}
		if err := k8s.Create(ctx, mailDomain(ns, "main", ns+".example", "a@"+ns+".example")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for c := range n {
			if err := k8s.Create(ctx, smtpCredential(ns, fmt.Sprintf("app-%d", c), "main", "app")); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-to-create")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			s, err := currentSnapshot()
			if err == nil && countIn(s, ns) == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("not all %d credentials reached the config in 2 minutes", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func countIn(s *snapshot.Snapshot, ns string) int {
	n := 0
	for _, c := range s.Credentials {
		if c.Source.Namespace == ns {
			n++
		}
	}
	return n
}
