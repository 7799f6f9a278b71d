package spool

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// TestGroupCommitSharesFsync holds the committer inside one batch while more Accepts
// queue up, then checks they all went out in a single batch with one directory fsync.
func TestGroupCommitSharesFsync(t *testing.T) {
	const waiting = 20
	entered := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var batches []int
	first := true
	s := openSpool(t, t.TempDir(), Options{beforeCommit: func(n int) {
		mu.Lock()
		batches = append(batches, n)
		mu.Unlock()
		if first {
			first = false
			close(entered)
			<-release
		}
	}})

	var wg sync.WaitGroup
	acceptOne := func(seq int) {
		wg.Go(func() {
			if _, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(testBody(seq))); err != nil {
				t.Errorf("Accept: %v", err)
			}
		})
	}
	acceptOne(0)
	<-entered
	for i := range waiting {
		acceptOne(i + 1)
	}
	waitFor(t, "all Accepts to queue behind the running commit", func() bool { return s.pendingLen() == waiting })
	close(release)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, waiting}; !slices.Equal(batches, want) {
		t.Fatalf("batch sizes = %v, want %v", batches, want)
	}
	if st := s.Stats(); st.Commits != 2 || st.Ops != waiting+1 {
		t.Fatalf("Stats = %+v, want 2 commits for %d ops", st, waiting+1)
	}
	if s.Len() != waiting+1 {
		t.Fatalf("Len = %d, want %d", s.Len(), waiting+1)
	}
}

// TestUpdateAndRemoveInOneBatch checks that a Remove queued after an Update of the same
// message wins, and an Update queued after a Remove does not bring the message back.
func TestUpdateAndRemoveInOneBatch(t *testing.T) {
	for name, removeFirst := range map[string]bool{
		"an update then a remove leaves nothing":        false,
		"a remove then an update does not resurrect it": true,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			hold := false
			s := openSpool(t, dir, Options{beforeCommit: func(int) {
				if hold {
					hold = false
					entered <- struct{}{}
					<-release
				}
			}})
			id := accept(t, s, 1)
			other := accept(t, s, 2)
			m, err := s.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			hold = true // read by the committer only after the next wake-up below

			var wg sync.WaitGroup
			wg.Go(func() { _ = s.Remove(other) }) // occupies the committer
			<-entered
			errs := make(chan error, 2)
			if removeFirst {
				wg.Go(func() { errs <- s.Remove(id) })
				waitFor(t, "the remove to queue", func() bool { return s.pendingLen() == 1 })
				wg.Go(func() { errs <- s.Update(m) })
			} else {
				wg.Go(func() { errs <- s.Update(m) })
				waitFor(t, "the update to queue", func() bool { return s.pendingLen() == 1 })
				wg.Go(func() { errs <- s.Remove(id) })
			}
			waitFor(t, "both to queue", func() bool { return s.pendingLen() == 2 })
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("unexpected error: %v", err)
				}
			}

			if s.Len() != 0 {
				t.Fatalf("Len = %d, want 0", s.Len())
			}
			if files := append(queueFiles(t, dir), tmpFiles(t, dir)...); len(files) != 0 {
				t.Fatalf("files left: %v", files)
			}
		})
	}
}
