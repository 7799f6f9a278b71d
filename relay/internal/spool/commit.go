package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

type opKind int

const (
	opAccept opKind = iota
	opUpdate
	opRemove
)

// op is one change handed to the committer. Its file is written and fsync'd by the
// caller; the committer only renames or unlinks, then fsyncs the queue directory once
// per batch.
type op struct {
	kind     opKind
	id       string
	tmp      string  // accept: tmp/ID.msg; update: the new state in tmp/
	next     int64   // accept, update: heap key of NextAttempt
	size     int64   // accept
	markerAt int64   // accept
	state    Message // accept: the state at acceptance, for Spool.fresh
	announce func()  // accept: see AcceptSealed; the entry is not due until it returned
	tally    tally   // accept, update

	// Guarded by Spool.mu.
	taken     bool // the committer has it; it can no longer be withdrawn
	abandoned bool // the caller gave up after taken: undo an accept
	finished  bool // the result is in done

	done chan error // capacity 1
}

// submit queues o for the next group commit and waits for its result. If ctx ends
// first, an op still queued is withdrawn; a taken accept is undone by the committer.
// Either way the caller gets ctx's error and no acknowledged message is left behind.
func (s *Spool) submit(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.discard(o)
		return ErrClosed
	}
	s.pending = append(s.pending, o)
	s.mu.Unlock()
	s.wakeCommitter()

	select {
	case err := <-o.done:
		return s.announced(o, err)
	case <-ctx.Done():
	}
	s.mu.Lock()
	switch {
	case o.finished:
		s.mu.Unlock()
		return s.announced(o, <-o.done)
	case !o.taken:
		s.pending = slices.DeleteFunc(s.pending, func(p *op) bool { return p == o })
		s.mu.Unlock()
		s.discard(o)
	default:
		o.abandoned = true
		s.mu.Unlock()
	}
	return fmt.Errorf("spool: commit %s: %w", o.id, ctx.Err())
}

// announced runs a committed accept's announce and then lets delivery see the message.
func (s *Spool) announced(o *op, err error) error {
	if err != nil || o.announce == nil {
		return err
	}
	o.announce()
	s.mu.Lock()
	if e, ok := s.idx.byID[o.id]; ok {
		e.announcing = false
	}
	s.mu.Unlock()
	s.wakeRunner()
	return nil
}

func (o *op) removeTemp() {
	if o.tmp != "" {
		_ = os.Remove(o.tmp)
	}
}

// wakeRunner tells whoever waits on Notify that messages were accepted.
func (s *Spool) wakeRunner() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Spool) wakeCommitter() {
	select {
	case s.commitCh <- struct{}{}:
	default:
	}
}

// commitLoop is the single committer: it takes everything queued since its last
// batch, so callers that arrive while a directory fsync is running share the next one.
func (s *Spool) commitLoop() {
	defer close(s.stopped)
	for range s.commitCh {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		if s.maxBatch > 0 && len(batch) > s.maxBatch {
			s.pending = slices.Clone(batch[s.maxBatch:])
			batch = batch[:s.maxBatch]
			s.wakeCommitter()
		}
		for _, o := range batch {
			o.taken = true
		}
		closed := s.closed
		s.mu.Unlock()
		if len(batch) > 0 {
			s.commit(batch)
		}
		if closed {
			return
		}
	}
}

func (s *Spool) commit(batch []*op) {
	if s.hookPre != nil {
		s.hookPre(len(batch))
	}
	errs := make([]error, len(batch))
	b := &batchFiles{gone: make(map[string]bool), updated: make(map[string]bool)}
	for i, o := range batch {
		errs[i] = s.apply(o, b)
	}
	s.crash("before-dir-sync")
	if err := s.queueFD.Sync(); err != nil {
		// The removals may not be durable: a file freed now must not be written to.
		for _, f := range b.freed {
			_ = os.Remove(f.path)
		}
		b.freed = nil
		err = storageErr("sync queue dir", err)
		for i, o := range batch {
			if errs[i] == nil {
				errs[i] = err
				if o.kind == opAccept { // never acknowledged: do not deliver it
					s.unlinkMessage(o.id)
				}
			}
		}
	}

	accepted := false
	s.mu.Lock()
	s.stats.Commits++
	for _, f := range b.freed {
		s.free.put(f)
	}
	for i, o := range batch {
		err := errs[i]
		if o.kind == opAccept {
			delete(s.accepting, o.id)
		}
		switch {
		case o.kind == opAccept && err == nil && o.abandoned:
			// The client saw no 250, so it will retry; a crash before this unlink is
			// durable only causes a duplicate, never a loss.
			s.unlinkMessage(o.id)
		case o.kind == opAccept && err == nil:
			s.idx.put(o.id, o.next, o.size)
			s.idx.setTally(o.id, o.tally)
			s.idx.byID[o.id].markerAt = o.markerAt
			if len(s.fresh) < freshStates {
				s.fresh[o.id] = o.state
			}
			if o.announce != nil {
				s.idx.byID[o.id].announcing = true // announced wakes the runner
			} else {
				accepted = true
			}
		case o.kind == opUpdate && err == nil:
			if e, ok := s.idx.byID[o.id]; ok {
				s.idx.put(o.id, o.next, e.size)
				s.idx.setTally(o.id, o.tally)
				e.updated = true
			}
			delete(s.fresh, o.id)
		case o.kind == opRemove && b.gone[o.id]:
			s.idx.remove(o.id) // its state is unlinked, even if a later step failed
			delete(s.fresh, o.id)
		}
		if err == nil {
			s.stats.Ops++
		}
	}
	// Signal before any Accept returns, so a message is never acknowledged without
	// a wake-up for the runner still to come.
	if accepted {
		s.wakeRunner()
	}
	for i, o := range batch {
		o.finished = true
		o.done <- errs[i]
	}
	s.mu.Unlock()
}

// batchFiles is what the ops of one batch did to the queue so far, which the index
// learns only once the batch is committed.
type batchFiles struct {
	gone    map[string]bool // removed
	updated map[string]bool // given a later state
	freed   []freeFile      // message files of removed messages, to reuse once durable
}

// apply performs one op's renames or unlinks, without the directory fsync.
func (s *Spool) apply(o *op, b *batchFiles) error {
	switch o.kind {
	case opAccept:
		if err := rename(o.tmp, s.msgPath(o.id)); err != nil {
			o.removeTemp()
			return storageErr("commit message", err)
		}
		return nil
	case opUpdate:
		if ok, _, _ := s.lookup(o.id); !ok || b.gone[o.id] {
			o.removeTemp()
			return fmt.Errorf("update %s: %w", o.id, ErrNotFound)
		}
		if err := rename(o.tmp, s.statePath(o.id)); err != nil {
			o.removeTemp()
			return storageErr("commit update", err)
		}
		b.updated[o.id] = true
		return nil
	case opRemove:
		ok, updated, size := s.lookup(o.id)
		if !ok || b.gone[o.id] {
			return fmt.Errorf("remove %s: %w", o.id, ErrNotFound)
		}
		// The message file goes first: it is the commit point. A later state left
		// behind by a crash is an orphan that Open deletes; the other order could
		// bring the message back with its state at acceptance, and deliver it again.
		if err := s.removeMessageFile(o.id, size, b); err != nil {
			return err
		}
		b.gone[o.id] = true
		if !updated && !b.updated[o.id] {
			return nil
		}
		s.crash("between-unlinks")
		if err := os.Remove(s.statePath(o.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove state %s: %w", o.id, err)
		}
		return nil
	}
	return fmt.Errorf("spool: unknown op %d", o.kind)
}

// unlinkMessage undoes an accept, best effort. An accepted message has no later state
// yet, so its message file is all there is.
func (s *Spool) unlinkMessage(id string) {
	_ = os.Remove(s.msgPath(id))
}

// removeMessageFile takes a removed message's file out of the queue: into free/, to be
// reused (freeFiles), or unlinked.
func (s *Spool) removeMessageFile(id string, size int64, b *batchFiles) error {
	path := s.msgPath(id)
	if s.free.wants(size, len(b.freed)) {
		s.freeSeq++
		f := freeFile{path: filepath.Join(s.freeDir, strconv.FormatUint(s.freeSeq, 10)), size: size}
		err := rename(path, f.path)
		if err == nil {
			b.freed = append(b.freed, f)
			return nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		// Unlink it instead.
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove message %s: %w", id, err)
	}
	return nil
}

// lookup reports whether id is queued, whether Update has written its state since, and
// the size of its message file.
func (s *Spool) lookup(id string) (queued, updated bool, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.idx.byID[id]
	if !ok {
		return false, false, 0
	}
	return true, e.updated, e.markerAt + int64(footerSize)
}

// crash calls the test hook that kills the process at a named point.
func (s *Spool) crash(point string) {
	if s.crashAt != nil {
		s.crashAt(point)
	}
}
