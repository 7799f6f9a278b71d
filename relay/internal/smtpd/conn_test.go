package smtpd

import (
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// recordingConn is a net.Conn that records what is done to it, in order.
type recordingConn struct {
	net.Conn // nil: only the methods below are called
	ops      []string
	writeErr error
}

func (r *recordingConn) Write(b []byte) (int, error) {
	r.ops = append(r.ops, "write "+string(b))
	if r.writeErr != nil {
		return 0, r.writeErr
	}
	return len(b), nil
}

func (r *recordingConn) Read([]byte) (int, error) {
	r.ops = append(r.ops, "read")
	return 0, nil
}

func (r *recordingConn) SetWriteDeadline(time.Time) error {
	r.ops = append(r.ops, "write deadline")
	return nil
}

func (r *recordingConn) Close() error {
	r.ops = append(r.ops, "close")
	return nil
}

func newRecordedConn(t *testing.T) (*conn, *recordingConn) {
	t.Helper()
	rec := &recordingConn{}
	// Close tells the server to forget the connection; an empty one does.
	return &conn{Conn: rec, srv: &Server{}, release: func() {}}, rec
}

// A reply's lines, which go-smtp writes and flushes one by one, reach the client in one
// write, sent before the server reads, changes the write deadline or closes.
func TestConnSendsRepliesBeforeItWaits(t *testing.T) {
	c, rec := newRecordedConn(t)
	for _, line := range []string{"250-relay.test\r\n", "250-PIPELINING\r\n", "250 SMTPUTF8\r\n"} {
		if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(rec.ops) != 0 {
		t.Fatalf("written before the server waits: %q", rec.ops)
	}
	_, _ = c.Read(make([]byte, 16))
	_, _ = c.Write([]byte("220 go ahead\r\n"))
	_ = c.SetWriteDeadline(time.Now())
	_, _ = c.Write([]byte("221 bye\r\n"))
	_ = c.Close()
	want := []string{
		"write 250-relay.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n", "read",
		"write 220 go ahead\r\n", "write deadline",
		"write 221 bye\r\n", "close",
	}
	if !slices.Equal(rec.ops, want) {
		t.Errorf("the connection saw\n%q\nwant\n%q", rec.ops, want)
	}
}

// A send that fails fails every later read and write, as a broken connection would: the
// server must not go on as if the client had its reply.
func TestConnFailedSendIsSticky(t *testing.T) {
	c, rec := newRecordedConn(t)
	rec.writeErr = errors.New("connection reset")
	_, _ = c.Write([]byte("250 ok\r\n"))
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatal("Read after a failed send succeeded")
	}
	if _, err := c.Write([]byte("250 ok\r\n")); err == nil {
		t.Fatal("Write after a failed send succeeded")
	}
	if slices.Contains(rec.ops, "read") {
		t.Errorf("the connection was read after its send failed: %q", rec.ops)
	}
}

// Held bytes are bounded: past maxHeld they are sent without waiting for a read.
func TestConnSendsALargeWriteAtOnce(t *testing.T) {
	c, rec := newRecordedConn(t)
	_, _ = c.Write(make([]byte, maxHeld))
	if len(rec.ops) != 1 {
		t.Errorf("a %d-byte write was held: %d writes", maxHeld, len(rec.ops))
	}
}
