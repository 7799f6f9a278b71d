package spool

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestAcceptAsQueuesUnderTheGivenID(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := s.NewID()
	if !validID(id) {
		t.Fatalf("NewID = %q, not a queue id", id)
	}
	if err := s.AcceptAs(context.Background(), id, testEnvelope(), bytes.NewReader(testBody(1))); err != nil {
		t.Fatal(err)
	}
	m, err := s.Get(id)
	if err != nil || m.ID != id {
		t.Fatalf("Get(%s) = %+v, %v", id, m, err)
	}
	if err := checkBody(readBody(t, s, id)); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptAsRefuses(t *testing.T) {
	tests := map[string]func(t *testing.T, s *Spool) string{
		"an id that is not a queue id, which could name another file": func(*testing.T, *Spool) string {
			return "../queue/x"
		},
		"an id already queued, which would replace another message": func(t *testing.T, s *Spool) string {
			return accept(t, s, 1)
		},
		"an id another accept is writing": func(t *testing.T, s *Spool) string {
			id := s.NewID()
			f, err := s.createBody(id)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.f.Close() })
			return id
		},
	}
	for name, id := range tests {
		t.Run(name, func(t *testing.T) {
			s := openSpool(t, t.TempDir(), Options{})
			id := id(t, s)
			before := s.Len()
			body := &readSpy{r: bytes.NewReader(testBody(2))}
			if err := s.AcceptAs(context.Background(), id, testEnvelope(), body); err == nil {
				t.Fatalf("AcceptAs(%q) succeeded", id)
			}
			if body.read || s.Len() != before {
				t.Fatalf("a refused AcceptAs read the body (%v) or changed the queue (Len %d, was %d)", body.read, s.Len(), before)
			}
			if _, err := s.Get(id); err == nil && !bytes.Equal(readBody(t, s, id), testBody(1)) {
				t.Fatalf("the queued message %s was replaced", id)
			}
		})
	}
}

func TestAcceptAsAfterCloseFails(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := s.NewID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AcceptAs(context.Background(), id, testEnvelope(), bytes.NewReader(testBody(1))); !errors.Is(err, ErrClosed) {
		t.Fatalf("AcceptAs after Close = %v, want ErrClosed", err)
	}
}

// readSpy records whether its body was read at all.
type readSpy struct {
	r    *bytes.Reader
	read bool
}

func (r *readSpy) Read(p []byte) (int, error) {
	r.read = true
	return r.r.Read(p)
}
