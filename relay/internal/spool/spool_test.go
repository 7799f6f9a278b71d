package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := openSpool(t, dir, Options{Now: func() time.Time { return now }})

	env := testEnvelope("bob@example.net", "carol@example.org")
	body := testBody(1)
	id, err := s.Accept(context.Background(), env, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if !validID(id) {
		t.Fatalf("Accept returned id %q, not a queue id", id)
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("Notify was not signalled after Accept")
	}
	if s.Len() != 1 {
		t.Fatalf("Len = %d, want 1", s.Len())
	}

	m, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	env.ReceivedAt = now
	if m.ID != id || m.Size != int64(len(body)) || !m.NextAttempt.Equal(now) || m.Attempts != 0 {
		t.Fatalf("Get = %+v, want id %s, size %d, due now, no attempts", m, id, len(body))
	}
	if m.Envelope.Sender != env.Sender || !slices.Equal(m.Envelope.Recipients, env.Recipients) ||
		m.Envelope.AuthUser != env.AuthUser || m.Envelope.ClientIP != env.ClientIP ||
		m.Envelope.Direction != env.Direction || !m.Envelope.ReceivedAt.Equal(now) {
		t.Fatalf("envelope = %+v, want %+v", m.Envelope, env)
	}
	for i, r := range m.Recipients {
		if r.Address != env.Recipients[i] || r.Status != StatusPending {
			t.Fatalf("recipient %d = %+v, want %s pending", i, r, env.Recipients[i])
		}
	}
	if got := readBody(t, s, id); !bytes.Equal(got, body) {
		t.Fatalf("OpenBody returned %d bytes, want the %d accepted", len(got), len(body))
	}
	if due := s.Due(now, 10); len(due) != 1 || due[0].ID != id {
		t.Fatalf("Due(now) = %v, want [%s]", due, id)
	}
	if next, ok := s.NextDue(); !ok || !next.Equal(now) {
		t.Fatalf("NextDue = %v, %v; want %v, true", next, ok, now)
	}

	later := now.Add(time.Hour)
	m.Attempts = 1
	m.NextAttempt = later
	m.Recipients[0].Status = StatusDelivered
	m.Recipients[0].LastReply = "250 2.0.0 ok"
	m.Recipients[1].Attempts = 1
	m.Recipients[1].LastReply = "451 4.3.0 try later"
	m.Size = 1 // ignored: the body never changes
	if err := s.Update(m); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if due := s.Due(now, 10); len(due) != 0 {
		t.Fatalf("Due(now) after deferring = %v, want none", due)
	}
	if next, ok := s.NextDue(); !ok || !next.Equal(later) {
		t.Fatalf("NextDue after Update = %v, %v; want %v", next, ok, later)
	}

	// The update is on disk: a new Spool over the same directory sees it.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openSpool(t, dir, Options{})
	got, err := s.Get(id)
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got.Attempts != 1 || !got.NextAttempt.Equal(later) || got.Size != int64(len(body)) ||
		got.Recipients[0].Status != StatusDelivered || got.Recipients[1].LastReply != "451 4.3.0 try later" {
		t.Fatalf("state after reopen = %+v, want the update", got)
	}
	if due := s.Due(later, 10); len(due) != 1 || due[0].ID != id {
		t.Fatalf("Due(later) after reopen = %v, want [%s]", due, id)
	}

	if err := s.Remove(id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: err = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBody(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBody after Remove: err = %v, want ErrNotFound", err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: err = %v, want ErrNotFound", err)
	}
	if err := s.Update(got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update after Remove: err = %v, want ErrNotFound", err)
	}
	if _, ok := s.NextDue(); ok || s.Len() != 0 {
		t.Fatalf("queue not empty after Remove: Len %d", s.Len())
	}
	if files := append(queueFiles(t, dir), tmpFiles(t, dir)...); len(files) != 0 {
		t.Fatalf("files left after Remove: %v", files)
	}
}

func TestOpenRefusesADirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	openSpool(t, dir, Options{})
	if s, err := Open(dir, Options{}); err == nil {
		_ = s.Close()
		t.Fatal("second Open of a spool in use succeeded")
	}
}

func TestClosedSpoolRefusesWork(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := accept(t, s, 1)
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(testBody(2))); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Update(m); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrClosed) {
		t.Fatalf("Remove after Close: err = %v, want ErrClosed", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	const workers, each = 8, 20

	var mu sync.Mutex
	ids := make(map[string]int)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq := w*each + i
				id := accept(t, s, seq)
				mu.Lock()
				ids[id] = seq
				mu.Unlock()
			}
		})
	}
	// Meanwhile a runner defers and removes whatever is due.
	stop := make(chan struct{})
	removed := make(chan map[string]bool)
	go func() {
		gone := make(map[string]bool)
		seen := 0
		defer func() { removed <- gone }()
		for {
			select {
			case <-stop:
				return
			case <-s.Notify():
			}
			for _, m := range s.Due(time.Now(), 5) {
				seen++
				if seen%2 == 0 {
					if err := s.Remove(m.ID); err != nil {
						t.Errorf("Remove(%s): %v", m.ID, err)
					}
					gone[m.ID] = true
					continue
				}
				m.Attempts++
				m.NextAttempt = time.Now().Add(time.Hour)
				if err := s.Update(m); err != nil {
					t.Errorf("Update(%s): %v", m.ID, err)
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	gone := <-removed

	if len(ids) != workers*each {
		t.Fatalf("%d distinct ids for %d accepts", len(ids), workers*each)
	}
	if s.Len() != len(ids)-len(gone) {
		t.Fatalf("Len = %d, want %d accepted - %d removed", s.Len(), len(ids), len(gone))
	}
	for id, seq := range ids {
		if gone[id] {
			continue
		}
		m, err := s.Get(id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if body := readBody(t, s, id); !bytes.Equal(body, testBody(seq)) || m.Size != int64(len(body)) {
			t.Fatalf("message %s: body or size does not match message %d", id, seq)
		}
	}
}

// Attempt marks an attempt in place: the message reads as in flight and not due until
// its next attempt, across a reopen, without a second file; the state Update writes
// after the attempt wins over the mark, and Remove leaves nothing.
func TestAttemptMarksInPlace(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	id := accept(t, s, 1)
	next := time.Now().Add(time.Hour).Round(0)
	body, err := s.Attempt(id, 1, next)
	if err != nil {
		t.Fatal(err)
	}
	// The body it returns is the message as accepted, without the state after it.
	got, err := io.ReadAll(body)
	if cerr := body.Close(); err == nil {
		err = cerr
	}
	if err != nil || !bytes.Equal(got, testBody(1)) {
		t.Fatalf("Attempt's body: %d bytes, %v; want the accepted body", len(got), err)
	}
	check := func(when string, s *Spool) {
		t.Helper()
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Attempts != 1 || !m.NextAttempt.Equal(next) || m.Recipients[0].Attempts != 0 {
			t.Fatalf("%s: Get = %+v, want attempt 1 in flight, next at %v", when, m, next)
		}
		if due := s.DueIDs(time.Now(), 10); len(due) != 0 {
			t.Fatalf("%s: due = %v, want nothing before the next attempt", when, due)
		}
		if files := queueFiles(t, dir); len(files) != 1 {
			t.Fatalf("%s: queue holds %v, want the message file alone", when, files)
		}
		if got := readBody(t, s, id); !bytes.Equal(got, testBody(1)) {
			t.Fatalf("%s: the body changed", when)
		}
	}
	check("after the mark", s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, dir, Options{})
	check("after reopening", s)

	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	m.NextAttempt = time.Now().Add(-time.Minute).Round(0)
	m.Recipients[0].Attempts = 1
	m.Recipients[0].LastReply = "451 4.3.0 try later"
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	updated, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !updated.NextAttempt.Equal(m.NextAttempt) || updated.Recipients[0].LastReply != m.Recipients[0].LastReply {
		t.Fatalf("after Update: Get = %+v, want the updated state", updated)
	}
	if due := s.DueIDs(time.Now(), 10); len(due) != 1 {
		t.Fatalf("after Update: due = %v, want the message", due)
	}
	// The next attempt is marked over the updated state.
	if body, err := s.Attempt(id, 2, next); err != nil {
		t.Fatal(err)
	} else {
		_ = body.Close()
	}
	if got, _ := s.Get(id); got.Attempts != 2 || got.Recipients[0].LastReply != m.Recipients[0].LastReply {
		t.Fatalf("second mark: Get = %+v, want attempt 2 over the updated state", got)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if files := queueFiles(t, dir); len(files) != 0 {
		t.Fatalf("queue after Remove holds %v", files)
	}
	if _, err := s.Attempt(id, 3, next); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Attempt after Remove: %v, want ErrNotFound", err)
	}
}

// The states of fresh messages are kept in memory so the runner does not read them
// back: what Get returns is still the caller's own copy, and a later state replaces
// the kept one.
func TestFreshStatesAreCopies(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := accept(t, s, 1)
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Recipients[0].Status = StatusDelivered
	m.Envelope.Recipients[0] = "changed@example.net"
	again, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if again.Recipients[0].Status != StatusPending || again.Envelope.Recipients[0] == "changed@example.net" {
		t.Fatalf("a change to Get's result reached the spool: %+v", again)
	}
	again.Recipients[0].Attempts, again.Attempts = 1, 1
	if err := s.Update(again); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(id); err != nil || got.Attempts != 1 || got.Recipients[0].Attempts != 1 {
		t.Fatalf("after Update: Get = %+v, %v; want the updated state", got, err)
	}
}

// A removed message's file is reused for the next accept: written over from its start
// and cut to the new message, so nothing of the old one shows, now or after a reopen;
// Open empties the pool.
func TestMessageFilesAreReused(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	long := bytes.Repeat([]byte("the earlier, longer message\r\n"), 200)
	first, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(long))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(first); err != nil {
		t.Fatal(err)
	}
	free := filepath.Join(dir, freeDir)
	if got := dirNames(t, free); len(got) != 1 {
		t.Fatalf("free/ after the removal = %v, want the removed message's file", got)
	}
	second := accept(t, s, 2)
	if got := dirNames(t, free); len(got) != 0 {
		t.Fatalf("free/ after the next accept = %v, want its file reused", got)
	}
	check := func(when string, s *Spool) {
		t.Helper()
		if got := readBody(t, s, second); !bytes.Equal(got, testBody(2)) {
			t.Fatalf("%s: the reused file's body is %d bytes, want the new message", when, len(got))
		}
		data, err := os.ReadFile(filepath.Join(dir, queueDir, second+msgExt))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("earlier, longer")) {
			t.Fatalf("%s: the reused file still holds the removed message", when)
		}
	}
	check("before reopening", s)
	if err := s.Remove(second); err != nil {
		t.Fatal(err)
	}
	third := accept(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(free, "99"), long, 0o600); err != nil { // a crash left one
		t.Fatal(err)
	}
	s = openSpool(t, dir, Options{})
	if got := dirNames(t, free); len(got) != 0 {
		t.Fatalf("free/ after Open = %v, want it empty", got)
	}
	if got := readBody(t, s, third); !bytes.Equal(got, testBody(3)) {
		t.Fatal("the message in a twice reused file changed across the reopen")
	}
}

// A message file ends on a block boundary whatever the body's length, the padding
// reads back as nothing, and a reused file that held a message of about the same
// length keeps its length (its fsync then has no inode to write).
func TestMessageFilesEndOnABlock(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	sizeOf := func(id string) int64 {
		t.Helper()
		info, err := os.Stat(filepath.Join(dir, queueDir, id+msgExt))
		if err != nil {
			t.Fatal(err)
		}
		return info.Size()
	}
	// Sizes about the accept's 32 KiB copy buffer too, read in pieces: what fills it is
	// written at once, the rest with the state.
	for _, n := range []int{0, 1, 4000, fileAlign, 3*fileAlign + 17, 32 << 10, 32<<10 + 1, 96<<10 + 5} {
		body := []byte(strings.Repeat("0123456789abcdef", n/16+1)[:n])
		id, err := s.Accept(context.Background(), testEnvelope(), iotest.HalfReader(bytes.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		if size := sizeOf(id); size%fileAlign != 0 {
			t.Errorf("a %d-byte body makes a %d-byte file, not a multiple of %d", n, size, fileAlign)
		}
		if got := readBody(t, s, id); !bytes.Equal(got, body) {
			t.Errorf("a %d-byte body reads back as %d bytes", n, len(got))
		}
		m, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(n) {
			t.Errorf("a %d-byte body's state says %d bytes", n, m.Size)
		}
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	first, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(bytes.Repeat([]byte("a"), 4300)))
	if err != nil {
		t.Fatal(err)
	}
	size := sizeOf(first)
	if err := s.Remove(first); err != nil {
		t.Fatal(err)
	}
	second, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(bytes.Repeat([]byte("b"), 4310)))
	if err != nil {
		t.Fatal(err)
	}
	if got := sizeOf(second); got != size {
		t.Errorf("a reused file went from %d to %d bytes for a message 10 bytes longer", size, got)
	}
	if got := readBody(t, s, second); !bytes.Equal(got, bytes.Repeat([]byte("b"), 4310)) {
		t.Errorf("the reused file's body is %d bytes, want the new message", len(got))
	}
}
