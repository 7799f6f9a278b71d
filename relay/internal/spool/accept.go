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

// Accept stores body and env durably and returns the new queue id only once both are
// fsync'd, renamed into the queue and the queue directory fsync'd: the caller may
// answer 250. An error from body is returned wrapped and leaves nothing on disk, as
// does any other failure. ctx ends the wait for a commit; the message is then dropped.
// The message is due at once.
func (s *Spool) Accept(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	now := s.now()
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	env.Recipients = slices.Clone(env.Recipients)

	id, f, err := s.createBody(now)
	if err != nil {
		return "", err
	}
	o := &op{kind: opAccept, id: id, tmpBody: f.Name(), tmpState: filepath.Join(s.tmp, id+stateExt)}
	size, err := copyBody(ctx, f, body)
	if err != nil {
		_ = f.Close()
		_ = os.Remove(o.tmpBody)
		return "", err
	}
	s.crash("body-written")

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
		return "", err
	}
	if err := syncBoth(f, sf); err != nil {
		o.removeTemp()
		return "", err
	}
	s.crash("files-synced")
	o.next, o.size, o.tally = timeKey(m.NextAttempt), size, tallyOf(m)
	if err := s.submit(ctx, o); err != nil {
		return "", err
	}
	return id, nil
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

// createBody picks a fresh id and creates its body file in tmp/.
func (s *Spool) createBody(now time.Time) (string, *os.File, error) {
	for range 8 {
		id := newID(now)
		if s.queued(id) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(s.tmp, id+bodyExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, storageErr("create body", err)
		}
		return id, f, nil
	}
	return "", nil, errors.New("spool: no free queue id")
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
