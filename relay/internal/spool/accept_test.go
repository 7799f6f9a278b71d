package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

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
	if files := queueFiles(t, dir); len(files) != 1 {
		t.Fatalf("queue holds %v, want the first message's file", files)
	}
	if files := tmpFiles(t, dir); len(files) != 0 {
		t.Fatalf("tmp holds %v, want nothing", files)
	}
}
