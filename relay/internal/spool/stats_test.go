package spool

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestSummaryCountsWhatTheQueueHolds(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	now := t0
	opts := Options{Now: func() time.Time { return now }}
	s := openSpool(t, dir, opts)
	if got := s.Summary(); got != (Summary{}) {
		t.Fatalf("empty spool: Summary = %+v, want zero", got)
	}

	var ids []string
	var bytesQueued int64
	for i, rcpts := range [][]string{
		{"bob@example.net"},
		{"carol@example.org", "dave@example.org"},
		{"erin@example.com", "frank@example.com", "grace@example.com"},
	} {
		now = t0.Add(time.Duration(i) * time.Minute)
		body := testBody(i)
		id, err := s.Accept(context.Background(), testEnvelope(rcpts...), bytes.NewReader(body))
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		ids = append(ids, id)
		bytesQueued += int64(len(body))
	}
	now = t0.Add(5 * time.Minute)
	want := Summary{Messages: 3, Recipients: 6, Bytes: bytesQueued, OldestAge: 5 * time.Minute}
	if got := s.Summary(); got != want {
		t.Fatalf("three due messages: Summary = %+v, want %+v", got, want)
	}

	// The second message was tried: one recipient delivered, the other deferred for an hour.
	m, err := s.Get(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	m.Attempts, m.NextAttempt = 1, now.Add(time.Hour)
	m.Recipients[0].Status, m.Recipients[0].Attempts = StatusDelivered, 1
	m.Recipients[1].Attempts = 1
	if err := s.Update(m); err != nil {
		t.Fatalf("Update: %v", err)
	}
	// The third one is being delivered: its attempt is written, no outcome yet.
	m, err = s.Get(ids[2])
	if err != nil {
		t.Fatal(err)
	}
	m.Attempts, m.NextAttempt = 1, now.Add(time.Hour)
	if err := s.Update(m); err != nil {
		t.Fatalf("Update: %v", err)
	}
	want = Summary{Messages: 3, Deferred: 1, Recipients: 5, Bytes: bytesQueued, OldestAge: 5 * time.Minute}
	if got := s.Summary(); got != want {
		t.Fatalf("one deferred, one in delivery: Summary = %+v, want %+v", got, want)
	}

	// After a restart nothing is being delivered: the interrupted attempt waits too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, dir, opts)
	want.Deferred = 2
	if got := s.Summary(); got != want {
		t.Fatalf("after reopening: Summary = %+v, want %+v", got, want)
	}
	now = now.Add(time.Hour)
	want.Deferred, want.OldestAge = 0, 65*time.Minute
	if got := s.Summary(); got != want {
		t.Fatalf("an hour later, all due again: Summary = %+v, want %+v", got, want)
	}

	if err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	want.Messages, want.Recipients, want.Bytes = 2, 4, bytesQueued-int64(len(testBody(0)))
	want.OldestAge -= time.Minute
	if got := s.Summary(); got != want {
		t.Fatalf("oldest removed: Summary = %+v, want %+v", got, want)
	}
	for _, id := range ids[1:] {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Summary(); got != (Summary{}) {
		t.Fatalf("emptied: Summary = %+v, want zero", got)
	}
}

func TestIDTimeIsTheAcceptanceTime(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 11, 23, 9, 0, 0, 123_456_789, time.UTC),
		time.UnixMilli(0),
		time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := idTime(newID(at)), at.Truncate(time.Millisecond); !got.Equal(want) {
			t.Errorf("idTime(newID(%v)) = %v, want %v", at, got, want)
		}
	}
}

// BenchmarkSummary100k measures a scrape's work with 100k queued messages, half of them
// deferred, filled straight into the index (accepting them would take minutes of fsyncs).
func BenchmarkSummary100k(b *testing.B) {
	const n = 100_000
	start := time.Now().Add(-time.Hour)
	s := openSpool(b, b.TempDir(), Options{})
	s.mu.Lock()
	for i := range n {
		id := newID(start.Add(time.Duration(i) * time.Millisecond))
		next := start.Add(2 * time.Hour * time.Duration(i%2))
		s.idx.put(id, timeKey(next), 4096)
		s.idx.setTally(id, tally{pending: 2})
	}
	s.mu.Unlock()
	for b.Loop() {
		if sum := s.Summary(); sum.Messages != n || sum.Deferred != n/2 || sum.Recipients != 2*n {
			b.Fatalf("Summary = %+v", sum)
		}
	}
}
