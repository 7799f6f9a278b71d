package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
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

// failingReader yields some bytes, then fails like a dropped client connection.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestAcceptLeavesNothing(t *testing.T) {
	errDropped := errors.New("connection reset")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		ctx  context.Context
		body io.Reader
		want error
	}{
		"a body read error is returned wrapped and nothing is kept": {
			ctx: context.Background(), body: &failingReader{data: bytes.Repeat([]byte("x"), 100<<10), err: errDropped}, want: errDropped,
		},
		"an immediate body error keeps nothing": {
			ctx: context.Background(), body: &failingReader{err: errDropped}, want: errDropped,
		},
		"a canceled context keeps nothing": {
			ctx: canceled, body: bytes.NewReader(testBody(1)), want: context.Canceled,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, dir, Options{})
			id, err := s.Accept(tc.ctx, testEnvelope(), tc.body)
			if !errors.Is(err, tc.want) || id != "" {
				t.Fatalf("Accept = %q, %v; want error wrapping %v", id, err, tc.want)
			}
			if s.Len() != 0 {
				t.Fatalf("Len = %d, want 0", s.Len())
			}
			if files := append(queueFiles(t, dir), tmpFiles(t, dir)...); len(files) != 0 {
				t.Fatalf("files left: %v", files)
			}
			select {
			case <-s.Notify():
				t.Fatal("Notify signalled for a failed Accept")
			default:
			}
		})
	}
}

func TestCancelWhileWaitingForCommit(t *testing.T) {
	dir := t.TempDir()
	entered := make(chan int)
	release := make(chan struct{})
	s := openSpool(t, dir, Options{beforeCommit: func(n int) {
		entered <- n
		<-release
	}})

	// A first Accept holds the committer inside its batch.
	firstDone := make(chan error, 1)
	go func() {
		_, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(testBody(1)))
		firstDone <- err
	}()
	<-entered

	// A second Accept, still queued when its context ends, is withdrawn.
	ctx, cancel := context.WithCancel(context.Background())
	queuedDone := make(chan error, 1)
	go func() {
		_, err := s.Accept(ctx, testEnvelope(), bytes.NewReader(testBody(2)))
		queuedDone <- err
	}()
	waitFor(t, "the second Accept to queue", func() bool { return s.pendingLen() == 1 })
	cancel()
	if err := <-queuedDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Accept: err = %v, want context.Canceled", err)
	}
	if s.pendingLen() != 0 {
		t.Fatal("a canceled Accept stayed queued")
	}
	release <- struct{}{}
	if err := <-firstDone; err != nil {
		t.Fatalf("first Accept: %v", err)
	}

	// A third Accept, canceled after the committer took it, is undone after the commit.
	ctx, cancel = context.WithCancel(context.Background())
	takenDone := make(chan error, 1)
	go func() {
		_, err := s.Accept(ctx, testEnvelope(), bytes.NewReader(testBody(3)))
		takenDone <- err
	}()
	<-entered
	cancel()
	if err := <-takenDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("taken Accept: err = %v, want context.Canceled", err)
	}
	release <- struct{}{}
	waitFor(t, "the committer to finish", func() bool { return s.Stats().Commits == 2 })

	if s.Len() != 1 {
		t.Fatalf("Len = %d, want only the first message", s.Len())
	}
	if files := queueFiles(t, dir); len(files) != 2 {
		t.Fatalf("queue holds %v, want the first message's two files", files)
	}
	if files := tmpFiles(t, dir); len(files) != 0 {
		t.Fatalf("tmp holds %v, want nothing", files)
	}
}

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	keep := []string{accept(t, s, 1), accept(t, s, 2)}
	truncated := accept(t, s, 3)
	noBody := accept(t, s, 4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	q := filepath.Join(dir, queueDir)
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What crashed writers leave: half-written temp files and an orphan body.
	write(filepath.Join(dir, tmpDir, "01KAPW3Q5R00000000.body"), testBody(9)[:50])
	write(filepath.Join(dir, tmpDir, "01KAPW3Q5R00000000.json"), []byte(`{"version":1,"mess`))
	write(filepath.Join(dir, tmpDir, keep[0]+".u7.json"), []byte(`{`))
	orphan := "01KAPW3Q5R11111111"
	write(filepath.Join(q, orphan+".body"), testBody(9))
	// What must never be delivered: a body shorter than its state says, a state
	// without body, a state that does not parse.
	if err := os.Truncate(filepath.Join(q, truncated+".body"), 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(q, noBody+".body")); err != nil {
		t.Fatal(err)
	}
	garbled := "01KAPW3Q5R22222222"
	write(filepath.Join(q, garbled+".json"), []byte("not json"))
	write(filepath.Join(q, garbled+".body"), testBody(9))

	s = openSpool(t, dir, Options{})
	if s.Len() != len(keep) {
		t.Fatalf("Len after recovery = %d, want %d", s.Len(), len(keep))
	}
	for i, id := range keep {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("committed message %s lost: %v", id, err)
		}
		if got := readBody(t, s, id); !bytes.Equal(got, testBody(i+1)) {
			t.Fatalf("body of %s changed", id)
		}
	}
	if files := tmpFiles(t, dir); len(files) != 0 {
		t.Fatalf("tmp after recovery holds %v, want nothing", files)
	}
	var want []string
	for _, id := range keep {
		want = append(want, id+".body", id+".json")
	}
	slices.Sort(want)
	if got := queueFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("queue after recovery = %v, want %v", got, want)
	}
	wantCorrupt := []string{garbled + ".body", garbled + ".json", truncated + ".body", truncated + ".json", noBody + ".json"}
	slices.Sort(wantCorrupt)
	if got := dirNames(t, filepath.Join(dir, corruptDir)); !slices.Equal(got, wantCorrupt) {
		t.Fatalf("corrupt/ = %v, want %v", got, wantCorrupt)
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
