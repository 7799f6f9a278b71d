package discovery

import (
	"context"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/test/testkit"
)

// BenchmarkVerifyCached is the cost of an answer from the cache.
func BenchmarkVerifyCached(b *testing.B) {
	srv := testkit.Start(b)
	v := New(Options{Prober: Prober{AllowedNetworks: loopback}})
	defer v.Close()
	d := domainFor("example.com", srv)
	if got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictAccept {
		b.Fatalf("verdict %v", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = v.VerifyRecipient(context.Background(), d, "bob@example.com")
	}
}

// BenchmarkCallout is one whole callout over loopback, without TLS.
func BenchmarkCallout(b *testing.B) {
	srv := testkit.Start(b)
	p := &Prober{HELOName: "relay.test", AllowedNetworks: loopback}
	for b.Loop() {
		if res := p.Probe(context.Background(), "127.0.0.1", srv.Port, "example.com", "bob@example.com"); res.Outcome != Accepted {
			b.Fatalf("outcome %v: %v", res.Outcome, res.Err)
		}
	}
}

// BenchmarkJournalRecord is one fsync'd observation.
func BenchmarkJournalRecord(b *testing.B) {
	j, err := OpenJournal(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	for b.Loop() {
		if err := j.Record(discoverystate.Delivered, "bob@example.com", epoch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalRecordParallel shows group commit: concurrent records share fsyncs.
func BenchmarkJournalRecordParallel(b *testing.B) {
	j, err := OpenJournal(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Record(discoverystate.Delivered, "bob@example.com", epoch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
