package smtpd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConnectionLimitPerIP(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxConnectionsPerIP = 2 }))
	a := e.dial()
	e.dial()
	expectRefused(t, e, "third connection")
	a.expect("QUIT", "221 ")
	waitFor(t, "the slot to be released", func() bool { return e.srv.ActiveConnections() == 1 })
	e.dial().ehlo()
	if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("inbound", "limit_per_ip")); got != 1 {
		t.Errorf("per-IP refusals = %v, want 1", got)
	}
}

func TestConnectionRateLimitPerIP(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxConnectionRatePerIP = 2 }))
	for range 2 {
		c := e.dial()
		c.expect("QUIT", "221 ")
	}
	expectRefused(t, e, "third connection in a minute")
	if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("inbound", "limit_rate")); got != 1 {
		t.Errorf("rate refusals = %v, want 1", got)
	}
}

func TestConnectionLimitTotal(t *testing.T) {
	// A full listener whose sessions are all inside a transaction (or logged in, below)
	// refuses.
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxConnections = 1 }))
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	expectRefused(t, e, "second connection")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("inbound", "limit_total")); got != 1 {
		t.Errorf("total refusals = %v, want 1", got)
	}
}

func TestFullListenerEvictsTheOldestIdleConnectionThatHasNotLoggedIn(t *testing.T) {
	e := newEnv(t, Submission, withLimits(func(l *Limits) { l.MaxConnections = 3 }))
	oldest := e.dial()
	oldest.ehlo()
	younger := e.dial()
	younger.ehlo()
	loggedIn := e.submission("alice-relay", alicePassword)

	// A newcomer takes the slot of the oldest idle connection, not the logged-in one's.
	newcomer := e.dial()
	newcomer.ehlo()
	if rest := oldest.readEOF(); len(rest) != 0 {
		t.Fatalf("the evicted connection got %q, want a plain close", rest)
	}
	younger.expect("NOOP", "250 ")
	loggedIn.expect("MAIL FROM:<alice@example.com>", "250 ")
	loggedIn.expect("RSET", "250 ")

	// The next newcomer evicts the next oldest; the logged-in session never goes.
	e.dial().ehlo()
	if rest := younger.readEOF(); len(rest) != 0 {
		t.Fatalf("the second evicted connection got %q, want a plain close", rest)
	}
	loggedIn.expect("NOOP", "250 ")
	if got := testutil.ToFloat64(e.metrics.Connections.WithLabelValues("submission", "evicted")); got != 2 {
		t.Errorf("evictions = %v, want 2", got)
	}
}

// expectRefused dials e and expects a connection limit's lone 421 4.7.0, then the close.
func expectRefused(t *testing.T, e *testEnv, which string) {
	t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, e: e, conn: conn, r: bufio.NewReader(conn)}
	if rest := c.readEOF(); len(rest) != 1 || !strings.HasPrefix(rest[0], "421 4.7.0 ") {
		t.Fatalf("%s got %q, want 421 4.7.0 and close", which, rest)
	}
}

func TestCommandTimeoutEndsIdleConnection(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.CommandTimeout = 50 * time.Millisecond }))
	c := e.dial()
	if rest := c.readEOF(); len(rest) == 0 || !strings.HasPrefix(rest[0], "421 4.4.2 ") {
		t.Fatalf("idle connection got %q, want 421 4.4.2 and close", rest)
	}
}

func TestDataTimeoutEndsAStalledMessage(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.DataTimeout = 50 * time.Millisecond }))
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.expect("DATA", "354 ")
	c.send("From: x@foreign.example")
	c.expect("", "451 4.4.2 ")
	if n := e.spool.Len(); n != 0 {
		t.Fatalf("spool holds %d messages after a timeout", n)
	}
}
