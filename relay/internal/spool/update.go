package spool

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
)

// Update durably replaces m's delivery state: attempts, next attempt, per-recipient
// outcomes. It returns after the new state is fsync'd, renamed over the old one and
// the directory fsync'd; a crash keeps either the old or the new state. Size always
// keeps the accepted body's size; Envelope should be passed back unchanged.
func (s *Spool) Update(m Message) error {
	if !validID(m.ID) {
		return fmt.Errorf("update %q: %w", m.ID, ErrNotFound)
	}
	s.mu.Lock()
	e, ok := s.idx.byID[m.ID]
	var size int64
	if ok {
		size = e.size
	}
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case !ok:
		return fmt.Errorf("update %s: %w", m.ID, ErrNotFound)
	}
	m.Size = size
	tmp := filepath.Join(s.tmp, m.ID+".u"+strconv.FormatUint(s.seq.Add(1), 10)+stateExt)
	if err := writeState(tmp, m); err != nil {
		return err
	}
	s.crash("update-synced")
	// The wait is bounded by one directory fsync, and giving up early would leave the
	// caller unsure which state is on disk, so it is not cancellable.
	return s.submit(context.Background(), &op{kind: opUpdate, id: m.ID, tmpState: tmp, next: keyOf(m),
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
