package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Update durably replaces m's delivery state: attempts, next attempt, per-recipient
// outcomes. It returns after the new state is fsync'd, renamed over the old one and
// the directory fsync'd; a crash keeps either the old or the new state. Size always
// keeps the accepted body's size; Envelope should be passed back unchanged.
func (s *Spool) Update(m Message) error {
	if !validID(m.ID) {
		return fmt.Errorf("update %q: %w", m.ID, ErrNotFound)
	}
	e, err := s.entry("update", m.ID)
	if err != nil {
		return err
	}
	m.Size = e.size
	tmp := filepath.Join(s.tmp, m.ID+".u"+strconv.FormatUint(s.seq.Add(1), 10)+stateExt)
	if err := writeState(tmp, m); err != nil {
		return err
	}
	s.crash("update-synced")
	// The wait is bounded by one directory fsync, and giving up early would leave the
	// caller unsure which state is on disk, so it is not cancellable.
	return s.submit(context.Background(), &op{kind: opUpdate, id: m.ID, tmp: tmp, next: keyOf(m),
		tally: tallyOf(m)})
}

// Remove deletes a message once every recipient has a final outcome, or when an
// administrator deletes it. It returns after the deletion is durable, so a crash never
// redelivers a message already removed.
func (s *Spool) Remove(id string) error {
	if !validID(id) {
		return fmt.Errorf("remove %q: %w", id, ErrNotFound)
	}
	return s.submit(context.Background(), &op{kind: opRemove, id: id})
}

// Attempt records that delivery attempt number attempts of a message starts now, and
// that the next one is due at next should this one not finish, and returns the body
// to deliver: Get, Due and a reopened spool then show the message with these Attempts
// and NextAttempt, and its pending recipients with fewer attempts, as Update would.
// Unlike Update it writes sixteen bytes in place in the message file and does not fsync
// them: they survive the process being killed (the kernel has them), which is what they
// are for (a message whose delivery crashes the relay waits its backoff, and a
// recipient in flight is counted as a possible duplicate), but a power loss may take
// them back to the last Update. It creates no file, and the body shares the one open
// of the file, so a message delivered at its first attempt costs one file in all. The
// caller must have the message to itself (the runner's claim), as for Update, and
// closes the body.
func (s *Spool) Attempt(id string, attempts int, next time.Time) (*Body, error) {
	if !validID(id) || attempts <= 0 {
		return nil, fmt.Errorf("attempt %q: %w", id, ErrNotFound)
	}
	mk := marker{attempts: uint32(attempts), next: next.UnixNano()}
	e, err := s.entry("attempt", id)
	if err != nil {
		return nil, err
	}
	f, err := openFile(s.msgPath(id), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("attempt %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open message to mark an attempt: %w", err)
	}
	if _, err := f.WriteAt(mk.encode(), e.markerAt); err != nil {
		_ = f.Close()
		return nil, storageErr("mark attempt", err)
	}
	s.crash("attempt-marked")
	s.mu.Lock()
	if e, ok := s.idx.byID[id]; ok {
		e.mark = mk
		if !e.held {
			s.idx.put(id, mk.next, e.size)
		}
		e.attempting = e.pending > 0
	}
	s.mu.Unlock()
	return newBody(f, e.size), nil
}

// entry returns a copy of a queued message's index entry, for an operation (what) on
// it that must not run after Close.
func (s *Spool) entry(what, id string) (entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return entry{}, ErrClosed
	}
	e, ok := s.idx.byID[id]
	if !ok {
		return entry{}, fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	return *e, nil
}
