package controllers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
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
		waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := testkit.Poll(waitCtx, 10*time.Millisecond, func() error {
			s, err := currentSnapshot()
			if err != nil {
				return err
			}
			if got := countIn(s, ns); got != n {
				return fmt.Errorf("%d of %d credentials in the config", got, n)
			}
			return nil
		})
		cancel()
		if err != nil {
			b.Fatal(err)
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
