package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

// sealFor is the prefix the sealed tests store for message seq.
func sealFor(seq int) string { return fmt.Sprintf("X-Sealed: %d\r\n", seq) }

// eofSpy records whether its reader has returned io.EOF.
type eofSpy struct {
	r   io.Reader
	eof bool
}

func (s *eofSpy) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

func TestAcceptSealedStoresWhatSealSetsAfterTheBody(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := s.NewID()
	body := &eofSpy{r: bytes.NewReader(testBody(3))}
	err := s.AcceptSealed(context.Background(), id, testEnvelope(), body, func(env *Envelope) error {
		if !body.eof {
			t.Error("seal was called before the body's last byte was read")
		}
		env.Prepend = sealFor(3)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.Prepend != sealFor(3) || m.Size != int64(len(testBody(3))) {
		t.Fatalf("stored prefix %q and size %d", m.Envelope.Prepend, m.Size)
	}
	if err := checkBody(readBody(t, s, id)); err != nil {
		t.Fatalf("the body file is not the body as received: %v", err)
	}
	f, err := s.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Content is the prefix and the body as one stream, whatever the reads' sizes and
	// offsets (iotest also reads across the boundary with ReadAt and Seek).
	want := append([]byte(sealFor(3)), testBody(3)...)
	if err := iotest.TestReader(Content(m, f), want); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptSealedErrorKeepsNothing(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	errSign := errors.New("signing failed")
	id := s.NewID()
	err := s.AcceptSealed(context.Background(), id, testEnvelope(), bytes.NewReader(testBody(1)),
		func(*Envelope) error { return errSign }, nil)
	if !errors.Is(err, errSign) {
		t.Fatalf("AcceptSealed = %v, want an error wrapping the seal's", err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) || s.Len() != 0 {
		t.Fatalf("a message whose seal failed is queued: %v, Len %d", err, s.Len())
	}
	if files := append(queueFiles(t, dir), tmpFiles(t, dir)...); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}

// A message without a prefix reads as its body alone.
func TestContentWithoutPrefixIsTheBody(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := accept(t, s, 5)
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := iotest.TestReader(Content(m, f), testBody(5)); err != nil {
		t.Fatal(err)
	}
}

// Every message acknowledged before a kill keeps the prefix its seal set, with the body
// it was sealed for: the prefix is in the state file, fsync'd with the body before the
// acknowledgement.
func TestCrashKeepsSealedPrefix(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir, "sealed-loop")
	acked := map[string]int{}
	for len(acked) < 20 {
		line := c.next()
		var id string
		var seq int
		if _, err := fmt.Sscanf(line, "ACK %s %d", &id, &seq); err != nil {
			t.Fatalf("child said %q: %v", line, err)
		}
		acked[id] = seq
	}
	c.kill(t)

	s := openSpool(t, dir, Options{})
	for _, m := range checkComplete(t, s) {
		seq, ok := acked[m.ID]
		if !ok {
			continue // accepted but not yet acknowledged at the kill: whole, but not promised
		}
		delete(acked, m.ID)
		if m.Envelope.Prepend != sealFor(seq) {
			t.Errorf("message %s (seq %d) has prefix %q after the crash, want %q", m.ID, seq, m.Envelope.Prepend, sealFor(seq))
		}
	}
	if len(acked) != 0 {
		t.Fatalf("acknowledged messages lost: %v", acked)
	}
	if files := tmpFiles(t, dir); len(files) != 0 {
		t.Fatalf("tmp after recovery holds %v", files)
	}
}

// announce runs once the message is durable and before delivery can see it: inside it
// the message is queued (Get finds it) but not due, and after it, it is.
func TestAnnounceComesBeforeDelivery(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	id := s.NewID()
	var due []string
	var getErr error
	announced := false
	err := s.AcceptSealed(context.Background(), id, testEnvelope(), bytes.NewReader(testBody(1)), nil, func() {
		announced = true
		_, getErr = s.Get(id)
		due = s.DueIDs(time.Now().Add(time.Hour), 10)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !announced || getErr != nil || len(due) != 0 {
		t.Fatalf("inside announce (called %v): Get err %v, due %v; want the message queued and not due", announced, getErr, due)
	}
	if due := s.DueIDs(time.Now().Add(time.Hour), 10); len(due) != 1 || due[0] != id {
		t.Fatalf("after announce: due %v, want %s", due, id)
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("no wake-up for the runner after announce")
	}
}
