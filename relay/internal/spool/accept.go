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
		f, err := s.createBody(id)
		if errors.Is(err, errIDInUse) {
			continue
		}
		if err != nil {
			return "", err
		}
		if err := s.store(ctx, id, f, env, body, nil, now); err != nil {
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
	return s.AcceptSealed(ctx, id, env, body, nil)
}

// AcceptSealed is AcceptAs with a last word: seal, when not nil, is called once the
// body's last byte is on its way to disk and before the state is written, and may
// change the envelope it is given, typically to set Envelope.Prepend from what only
// the whole body determines (its signatures). What it sets is fsync'd with the body
// before AcceptSealed returns nil, so a 250 promises it as much as the body. An error
// from seal is returned wrapped and keeps nothing, as one from body does.
func (s *Spool) AcceptSealed(ctx context.Context, id string, env Envelope, body io.Reader, seal func(*Envelope) error) error {
	if !validID(id) {
		return fmt.Errorf("spool: %q is not a queue id", id)
	}
	if s.isClosed() {
		return ErrClosed
	}
	f, err := s.createBody(id)
	if err != nil {
		return err
	}
	return s.store(ctx, id, f, env, body, seal, s.now())
}

func (s *Spool) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// store writes body into f (tmp/id.msg), lets seal complete the envelope, appends the
// state, fsyncs the file and hands it to the committer; it returns once the commit is
// durable.
func (s *Spool) store(ctx context.Context, id string, f *os.File, env Envelope, body io.Reader, seal func(*Envelope) error, now time.Time) error {
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	env.Recipients = slices.Clone(env.Recipients)
	o := &op{kind: opAccept, id: id, tmp: f.Name()}
	fail := func(err error) error {
		_ = f.Close()
		o.removeTemp()
		return err
	}
	size, err := copyBody(ctx, f, body)
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
	markerAt, err := appendState(f, m)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(storageErr("sync message", err))
	}
	if err := f.Close(); err != nil {
		o.removeTemp()
		return storageErr("close message", err)
	}
	s.crash("file-synced")
	o.next, o.size, o.tally, o.markerAt, o.state = timeKey(m.NextAttempt), size, tallyOf(m), markerAt, m
	return s.submit(ctx, o)
}

// createBody creates id's message file in tmp/, for the body and then the state. O_EXCL
// refuses an id that another accept is writing; one whose file was already renamed into
// the queue is found after the create. A rename moves the file atomically from tmp/ to
// queue/, so one of the two checks always sees an accept of the same id, however the
// two interleave.
func (s *Spool) createBody(id string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.tmp, id+msgExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, errIDInUse
	}
	if err != nil {
		return nil, storageErr("create message", err)
	}
	_, err = os.Lstat(s.msgPath(id))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		if err == nil {
			return nil, errIDInUse
		}
		return nil, storageErr("check message", err)
	}
	return f, nil
}

// copyBody streams body into f, telling the client's read errors (returned wrapped as
// they are) from the disk's write errors.
func copyBody(ctx context.Context, f *os.File, body io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return size, fmt.Errorf("spool: accept: %w", err)
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return size, storageErr("write body", err)
			}
			size += int64(n)
		}
		if rerr == io.EOF {
			return size, nil
		}
		if rerr != nil {
			return size, fmt.Errorf("spool: read message body: %w", rerr)
		}
	}
}
