package smtpd

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// A client that sends commands outside a transaction, as a keep-alive or a probe, is
// ended after JunkCommandLimit of them (smtpd_junk_command_limit); an accepted message
// starts the count again.
func TestJunkCommandsEndTheConnection(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.JunkCommandLimit = 10 }))
	c := e.dial()
	c.ehlo() // 1
	for range 4 {
		c.expect("NOOP", "250 ") // 2..5
	}
	c.expect("MAIL FROM:<x@foreign.example>", "250 ") // 6
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	queueID(t, c.data(msg("x@foreign.example", "alice@example.com", "resets the count")))
	for range 10 {
		c.expect("RSET", "250 ")
	}
	if got := c.cmd("NOOP"); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("the 11th command outside a transaction: %q, want 421", got)
	}
	if rest := c.readEOF(); len(rest) != 0 {
		t.Errorf("after the 421: %q", rest)
	}
}

// A session older than MaxSessionLifetime ends between commands, never inside a
// message.
func TestSessionLifetimeEndsTheConnection(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxSessionLifetime = time.Hour }),
		func(o *Options) { o.Now = clock })
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	advance(30 * time.Minute)
	c.expect("NOOP", "250 ")
	advance(31 * time.Minute)
	// The limit is checked as the server turns to read the next command: depending on
	// whether it did so before or after the clock moved, the NOOP is answered first or
	// not at all, and then the connection ends with 421 without waiting for another.
	c.send("NOOP")
	rest := c.readEOF()
	if len(rest) == 0 || len(rest) > 2 || !strings.HasPrefix(rest[len(rest)-1], "421 ") ||
		len(rest) == 2 && !strings.HasPrefix(rest[0], "250 ") {
		t.Fatalf("after the session's lifetime: %q, want at most the NOOP's 250, then 421 and the end of the connection", rest)
	}
}

// BDAT chunks, each read after its own command line, cannot stretch a message past
// DataTimeout: the bound covers the whole transfer, as it does for DATA.
func TestDataTimeoutBoundsAllBDATChunks(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) {
		l.DataTimeout = 200 * time.Millisecond
		l.CommandTimeout = time.Minute // far beyond the client's wait below
	}))
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.send("BDAT 5\r\nabc") // the chunk is "abc\r\n": send ends the line
	c.expect("", "250 ")
	// The client now idles between chunks: the message's DataTimeout ends it, not the
	// command timeout of the next BDAT line.
	rest := c.readEOF()
	if len(rest) == 0 || !strings.HasPrefix(rest[len(rest)-1], "421 ") {
		t.Fatalf("a BDAT transfer stalled between chunks got %q, want 421 and the end of the connection", rest)
	}
	if n := e.spool.Len(); n != 0 {
		t.Fatalf("spool holds %d messages after a timeout", n)
	}
}
