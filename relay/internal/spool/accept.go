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
// once both are fsync'd, renamed into the queue and the queue directory fsync'd: the
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

// store writes body into f (tmp/id.body), lets seal complete the envelope, writes the
// state beside it, fsyncs both and hands them to the committer; it returns once the
// commit is durable.
func (s *Spool) store(ctx context.Context, id string, f *os.File, env Envelope, body io.Reader, seal func(*Envelope) error, now time.Time) error {
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	env.Recipients = slices.Clone(env.Recipients)
	o := &op{kind: opAccept, id: id, tmpBody: f.Name(), tmpState: filepath.Join(s.tmp, id+stateExt)}
	size, err := copyBody(ctx, f, body)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(o.tmpBody)
		return err
	}
	s.crash("body-written")
	if seal != nil {
		if err := seal(&env); err != nil {
			_ = f.Close()
			_ = os.Remove(o.tmpBody)
			return fmt.Errorf("spool: seal message: %w", err)
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
	sf, err := createState(o.tmpState, m)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(o.tmpBody)
		return err
	}
	if err := syncBoth(f, sf); err != nil {
		o.removeTemp()
		return err
	}
	s.crash("files-synced")
	o.next, o.size, o.tally = timeKey(m.NextAttempt), size, tallyOf(m)
	return s.submit(ctx, o)
}

// syncBoth fsyncs and closes the body and state files. The two fsyncs run at once, so
// the filesystem can make both durable in one journal commit instead of two.
func syncBoth(body, state *os.File) error {
	stateErr := make(chan error, 1)
	go func() { stateErr <- state.Sync() }()
	err := body.Sync()
	if serr := <-stateErr; err == nil {
		err = serr
	}
	for _, f := range []*os.File{body, state} {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return storageErr("sync message", err)
	}
	return nil
}

// createBody creates id's body file in tmp/. O_EXCL refuses an id that another accept
// is writing; one whose body was already renamed into the queue is found after the
// create. A rename moves the body atomically from tmp/ to queue/, so one of the two
// checks always sees an accept of the same id, however the two interleave.
func (s *Spool) createBody(id string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.tmp, id+bodyExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, errIDInUse
	}
	if err != nil {
		return nil, storageErr("create body", err)
	}
	_, err = os.Lstat(s.bodyPath(id))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		_ = f.Close()
		_ = os.Remove(f.Name())
		if err == nil {
			return nil, errIDInUse
		}
		return nil, storageErr("check body", err)
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
