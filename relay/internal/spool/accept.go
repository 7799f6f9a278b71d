package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errIDInUse is returned by AcceptAs for an id that is queued or being accepted.
var errIDInUse = errors.New("spool: queue id already in use")

// Accept stores body and env durably under a fresh queue id and returns the id only
// once both are fsync'd in one file, renamed into the queue and the queue directory
// fsync'd: the
// caller may answer 250. An error from body is returned wrapped and leaves nothing on
// disk, as does any other failure. ctx ends the wait for a commit; the message is then
// dropped. The message is due at once.
func (s *Spool) Accept(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	if s.isClosed() {
		return "", ErrClosed
	}
	now := s.now()
	for range 8 {
		id := newID(now)
		mf, err := s.createBody(id)
		if errors.Is(err, errIDInUse) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := s.store(ctx, id, mf, env, body, nil, nil, now); err != nil {
			return "", err
		}
		return id, nil
	}
	return "", errors.New("spool: no free queue id")
}

// AcceptAs is Accept under an id the caller took from NewID, with the same promise: nil
// means the message is durable. An id that is not a queue id, or that is queued or
// being accepted already, is refused before body is read. Since the caller has already
// written the id into the message, AcceptAs never picks another one.
func (s *Spool) AcceptAs(ctx context.Context, id string, env Envelope, body io.Reader) error {
	return s.AcceptSealed(ctx, id, env, body, nil, nil)
}

// AcceptSealed is AcceptAs with a last word: seal, when not nil, is called once the
// body's last byte is on its way to disk and before the state is written, and may
// change the envelope it is given, typically to set Envelope.Prepend from what only
// the whole body determines (its signatures). What it sets is fsync'd with the body
// before AcceptSealed returns nil, so a 250 promises it as much as the body. An error
// from seal is returned wrapped and keeps nothing, as one from body does.
//
// announce, when not nil, is called on the caller's goroutine once the message is
// durable and before delivery can see it (Due leaves it out until announce returns),
// so that what the caller records of the acceptance, the tracking line, always comes
// before anything delivery records of the message.
func (s *Spool) AcceptSealed(ctx context.Context, id string, env Envelope, body io.Reader, seal func(*Envelope) error, announce func()) error {
	if !validID(id) {
		return fmt.Errorf("spool: %q is not a queue id", id)
	}
	if s.isClosed() {
		return ErrClosed
	}
	mf, err := s.createBody(id)
	if err != nil {
		return err
	}
	return s.store(ctx, id, mf, env, body, seal, announce, s.now())
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// store writes body into the message file (tmp/id.msg, or a reused one), lets seal
// complete the envelope, appends the state, cuts what a reused file held beyond,
// fsyncs the file and hands it to the committer; it returns once the commit is durable.
func (s *Spool) store(ctx context.Context, id string, mf newFile, env Envelope, body io.Reader, seal func(*Envelope) error, announce func(), now time.Time) error {
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	env.Recipients = slices.Clone(env.Recipients)
	f := mf.f
	o := &op{kind: opAccept, id: id, tmp: f.Name(), announce: announce}
	fail := func(err error) error {
		_ = f.Close()
		s.discard(o)
		return err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	size, tail, err := copyBody(ctx, f, body, *bp)
	if err != nil {
		return fail(err)
	}
	s.crash("body-written")
	if seal != nil {
		if err := seal(&env); err != nil {
			return fail(fmt.Errorf("spool: seal message: %w", err))
		}
	}

	m := Message{
		ID:          id,
		Envelope:    env,
		Size:        size,
		Recipients:  make([]RecipientState, len(env.Recipients)),
		NextAttempt: now,
	}
	for i, rcpt := range env.Recipients {
		m.Recipients[i] = RecipientState{Address: rcpt, Status: StatusPending, UpdatedAt: now}
	}
	markerAt, err := appendState(f, tail, m)
	if err != nil {
		return fail(err)
	}
	if end := markerAt + int64(footerSize); mf.reused > end {
		// A reused file held a longer message: its tail must not follow the footer.
		// (One of the same length, after padding, keeps its length: no truncate.)
		if err := f.Truncate(end); err != nil {
			return fail(storageErr("truncate reused message file", err))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(storageErr("sync message", err))
	}
	if err := f.Close(); err != nil {
		s.discard(o)
		return storageErr("close message", err)
	}
	s.crash("file-synced")
	o.next, o.size, o.tally, o.markerAt, o.state = timeKey(m.NextAttempt), size, tallyOf(m), markerAt, m
	return s.submit(ctx, o)
}

// newFile is a message file being written: created in tmp/, or reused from free/, in
// which case reused is the size of what it held.
type newFile struct {
	f      *os.File
	reused int64
}

// createBody reserves id and opens a message file for its body and then its state: one
// the spool reuses (freeFiles), else a new one in tmp/. The reservation refuses an id
// that is queued or being accepted, until the accept is committed or given up.
func (s *Spool) createBody(id string) (newFile, error) {
	s.mu.Lock()
	if _, queued := s.idx.byID[id]; queued || s.accepting[id] {
		s.mu.Unlock()
		return newFile{}, errIDInUse
	}
	s.accepting[id] = true
	reuse, ok := s.free.take()
	s.mu.Unlock()
	if ok {
		f, err := openFile(reuse.path, os.O_WRONLY, 0)
		if err == nil {
			return newFile{f: f, reused: reuse.size}, nil
		}
		_ = os.Remove(reuse.path) // gone or unusable: write a new one instead
	}
	f, err := openFile(filepath.Join(s.tmp, id+msgExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		s.release(id)
		return newFile{}, storageErr("create message", err)
	}
	return newFile{f: f}, nil
}

// release ends the reservation of an id that createBody made.
func (s *Spool) release(id string) {
	s.mu.Lock()
	delete(s.accepting, id)
	s.mu.Unlock()
}

// discard gives up an accept that was not committed: its file goes, its id is free.
func (s *Spool) discard(o *op) {
	o.removeTemp()
	s.release(o.id)
}

// copyBody streams body into f through buf, telling the client's read errors (returned
// wrapped as they are) from the disk's write errors. It writes only whole buffers and
// returns the rest, which the caller writes with the state: a message that fits in buf
// takes one write(2) for body and state, where a write per read (the Received: field,
// the header, then the body's pieces) took four or more.
func copyBody(ctx context.Context, f *os.File, body io.Reader, buf []byte) (int64, []byte, error) {
	var size int64
	held := 0
	for {
		if err := ctx.Err(); err != nil {
			return size, nil, fmt.Errorf("spool: accept: %w", err)
		}
		n, rerr := body.Read(buf[held:])
		held += n
		size += int64(n)
		if held == len(buf) {
			if _, err := f.Write(buf); err != nil {
				return size, nil, storageErr("write body", err)
			}
			held = 0
		}
		if rerr == io.EOF {
			return size, buf[:held], nil
		}
		if rerr != nil {
			return size, nil, fmt.Errorf("spool: read message body: %w", rerr)
		}
	}
}
