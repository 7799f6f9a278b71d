package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAccept measures durable accepts of 4 KiB messages by concurrent sessions.
// msgs/commit shows how many accepts share one directory fsync. The batch=1 runs turn
// group commit off, as a baseline measured under the same conditions.
func BenchmarkAccept(b *testing.B) {
	for _, par := range []int{1, 8, 32} {
		for _, group := range []bool{true, false} {
			name := fmt.Sprintf("parallel=%d", par)
			if !group {
				name += "/batch=1"
			}
			b.Run(name, func(b *testing.B) { benchmarkAccept(b, par, group) })
		}
	}
}

func benchmarkAccept(b *testing.B, par int, group bool) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcde\n"), 4096/32)
	opts := Options{}
	if !group {
		opts.maxBatch = 1
	}
	s := openSpool(b, b.TempDir(), opts)
	env := testEnvelope()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for range par {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Ops)/float64(st.Commits), "msgs/commit")
}

// BenchmarkOpen10k measures the rescan at startup with 10k queued messages, written
// straight into the queue directory so that setting up does not take minutes of fsyncs.
func BenchmarkOpen10k(b *testing.B) {
	dir := b.TempDir()
	q := filepath.Join(dir, queueDir)
	if err := os.MkdirAll(q, 0o700); err != nil {
		b.Fatal(err)
	}
	body := testBody(1)
	now := time.Now()
	for i := range 10_000 {
		id := newID(now.Add(time.Duration(i) * time.Millisecond))
		m := Message{ID: id, Envelope: testEnvelope(), Size: int64(len(body)), NextAttempt: now,
			Recipients: []RecipientState{{Address: "bob@example.net", Status: StatusPending}}}
		writeMessageFileForTest(b, filepath.Join(q, id+msgExt), body, m)
	}
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 10_000 {
			b.Fatalf("Len = %d after Open, want 10000", s.Len())
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
