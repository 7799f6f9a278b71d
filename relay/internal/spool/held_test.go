package spool

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// An administrator's hold, release and delete are Updates and Removes: each is on disk
// when it returns, so a relay restarted (or killed) right after keeps it.
func TestHoldReleaseAndDeleteSurviveReopening(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	opts := Options{Now: func() time.Time { return now }}
	s := openSpool(t, dir, opts)
	held, kept, deleted := accept(t, s, 1), accept(t, s, 2), accept(t, s, 3)
	// Accepted in the same millisecond, the two left are in id order, not acceptance's.
	both := []string{held, kept}
	slices.Sort(both)

	m, err := s.Get(held)
	if err != nil {
		t.Fatal(err)
	}
	m.Held = true
	if err := s.Update(m); err != nil {
		t.Fatalf("Update (hold): %v", err)
	}
	if err := s.Remove(deleted); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	checkHeld := func(when string, s *Spool) {
		t.Helper()
		if due := s.DueIDs(now.Add(24*time.Hour), 10); !slices.Equal(due, []string{kept}) {
			t.Errorf("%s: DueIDs a day later = %v, want only %s (%s is held, %s deleted)", when, due, kept, held, deleted)
		}
		if ids := s.IDs(); !slices.Equal(ids, both) {
			t.Errorf("%s: IDs = %v, want %v", when, ids, both)
		}
		if m, err := s.Get(held); err != nil || !m.Held {
			t.Errorf("%s: Get(held) = %+v, %v; want it held", when, m, err)
		}
		if _, err := s.Get(deleted); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get(deleted) = %v, want ErrNotFound", when, err)
		}
		if sum := s.Summary(); sum.Messages != 2 || sum.Held != 1 || sum.Deferred != 0 {
			t.Errorf("%s: Summary = %+v, want 2 messages, 1 held, 0 deferred", when, sum)
		}
	}
	checkHeld("before reopening", s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, dir, opts)
	checkHeld("after reopening", s)
	if names := queueFiles(t, dir); len(names) != 3 {
		t.Errorf("queue/ holds %v, want the held message's file and later state, and the other's file", names)
	}

	// Released, it is due again at the NextAttempt it kept, and stays so after a restart.
	m, err = s.Get(held)
	if err != nil {
		t.Fatal(err)
	}
	m.Held = false
	if err := s.Update(m); err != nil {
		t.Fatalf("Update (release): %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, dir, opts)
	if due := s.DueIDs(now, 10); !slices.Equal(due, both) {
		t.Errorf("after release and reopening: DueIDs = %v, want %v", due, both)
	}
	if sum := s.Summary(); sum.Held != 0 {
		t.Errorf("after release: Summary = %+v, want nothing held", sum)
	}
}

// A queue of only held messages has nothing due: the runner must not set a timer for
// the held messages' placeholder key, hundreds of years away.
func TestNextDueIgnoresHeldMessages(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := openSpool(t, t.TempDir(), Options{Now: func() time.Time { return now }})
	id := accept(t, s, 1)
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Held = true
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	if next, ok := s.NextDue(); ok {
		t.Errorf("NextDue = %v, true; want false with only a held message queued", next)
	}
	other := accept(t, s, 2)
	if next, ok := s.NextDue(); !ok || !next.Equal(now) {
		t.Errorf("NextDue = %v, %v; want %v (message %s)", next, ok, now, other)
	}
}
