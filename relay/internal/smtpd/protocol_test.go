package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A reload swaps the directory: a transaction in flight keeps the view it started with,
// and a new connection sees the new one.
func TestReloadKeepsThePinnedDirectory(t *testing.T) {
	e := newEnv(t, Inbound)
	old := e.dial()
	old.ehlo()
	old.expect("MAIL FROM:<x@foreign.example>", "250 ")
	old.expect("RCPT TO:<bob@example.com>", "250 ")

	s := testSnapshot(t)
	s.Domains[0].Users = slices.DeleteFunc(s.Domains[0].Users, func(u snapshot.User) bool { return u.Address == "bob@example.com" })
	s.Domains[0].Users = append(s.Domains[0].Users, snapshot.User{Address: "carol@example.com"})
	e.dir.Store(buildDir(t, s))

	old.expect("RCPT TO:<alice@example.com>", "250 ")
	old.expect("RCPT TO:<carol@example.com>", "550 5.1.1 ")
	id := queueID(t, old.data(msg("x@foreign.example", "bob@example.com", "x")))
	if env, _ := e.message(id); !slices.Equal(env.Recipients, []string{"bob@example.com", "alice@example.com"}) {
		t.Errorf("recipients = %q", env.Recipients)
	}

	fresh := e.dial()
	fresh.ehlo()
	fresh.expect("MAIL FROM:<x@foreign.example>", "250 ")
	fresh.expect("RCPT TO:<bob@example.com>", "550 5.1.1 ")
	fresh.expect("RCPT TO:<carol@example.com>", "250 ")
}

// Commands pipelined behind STARTTLS (CVE-2011-0411) must not run in the TLS session.
func TestCommandsPipelinedBeforeSTARTTLSAreDiscarded(t *testing.T) {
	e := newEnv(t, Inbound)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, e: e, conn: conn, r: bufio.NewReader(conn)}
	c.expect("", "220 ")
	c.ehlo()
	if _, err := io.WriteString(conn, "STARTTLS\r\nMAIL FROM:<x@foreign.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n"); err != nil {
		t.Fatal(err)
	}
	c.expect("", "220 ")
	if c.r.Buffered() != 0 {
		t.Fatalf("server answered the injected commands in plaintext")
	}
	tc := tls.Client(conn, e.tls.client)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	// The first reply in TLS must be the one to our EHLO, and no transaction may exist.
	c.send("EHLO client.test.example")
	if first := c.reply(); !strings.HasPrefix(first[0], "250-Hello client.test.example") {
		t.Fatalf("first reply after STARTTLS = %q, want the EHLO reply", first)
	}
	c.expect("RCPT TO:<alice@example.com>", "502 5.5.1 ")
}

func TestAuthFailuresAreThrottledAndDelayed(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	limiter := throttle.NewAuthLimiter(throttle.DefaultAuthLimits(), func() time.Time { return now })
	e := newEnv(t, Submission, func(o *Options) { o.AuthLimiter = limiter },
		withLimits(func(l *Limits) { l.ErrorDelay = 3 * time.Millisecond }))
	c := e.dial()
	c.ehlo()
	c.starttls()
	c.ehlo()
	for i := range 10 {
		c.expect("AUTH PLAIN "+plain("", "alice-relay", fmt.Sprint("guess", i)), "535 5.7.8 ")
	}
	// The 11th attempt in the minute is refused before the password is looked at, even
	// with the right one, and from a new connection.
	c.expect("AUTH PLAIN "+plain("", "alice-relay", alicePassword), "454 4.7.0 ")
	c2 := e.dial()
	c2.ehlo()
	c2.starttls()
	c2.ehlo()
	c2.expect("AUTH PLAIN "+plain("", "alice-relay", alicePassword), "454 4.7.0 ")

	var authDelays []time.Duration
	for _, d := range e.sleeps.list() {
		if d != 3*time.Millisecond {
			authDelays = append(authDelays, d)
		}
	}
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second,
		5 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(authDelays, want) {
		t.Errorf("AUTH delays = %v, want %v (from the 4th failure, capped)", authDelays, want)
	}
	if got := testutil.ToFloat64(e.metrics.AuthFailures.WithLabelValues("bad_credentials")); got != 10 {
		t.Errorf("bad_credentials failures = %v, want 10", got)
	}
	if got := testutil.ToFloat64(e.metrics.AuthFailures.WithLabelValues("throttled")); got != 2 {
		t.Errorf("throttled failures = %v, want 2", got)
	}
}

func TestErrorLimits(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) {
		l.SoftErrorLimit = 2
		l.HardErrorLimit = 4
		l.ErrorDelay = 7 * time.Second
	}))
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	for i := range 3 {
		c.expect(fmt.Sprintf("RCPT TO:<r%d@foreign.example>", i), "554 5.7.1 ")
	}
	if got := e.sleeps.list(); !slices.Equal(got, []time.Duration{7 * time.Second}) {
		t.Errorf("error delays = %v, want one of 7s after the soft limit", got)
	}
	c.expect("RCPT TO:<r3@foreign.example>", "421 4.7.0 ")
	c.readEOF()
}

// The error count belongs to the connection, not to go-smtp's session, which STARTTLS
// replaces.
func TestErrorCountSurvivesSTARTTLS(t *testing.T) {
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.HardErrorLimit = 3 }))
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<a@foreign.example>", "554 ")
	c.expect("RCPT TO:<b@foreign.example>", "554 ")
	c.expect("RSET", "250 ")
	c.starttls()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<c@foreign.example>", "421 4.7.0 ")
}

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
	e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxConnections = 1 }))
	e.dial()
	expectRefused(t, e, "second connection")
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

func TestShutdownEndsIdleSessionsAndFinishesTransactions(t *testing.T) {
	e := newEnv(t, Inbound)
	idle := e.dial()
	idle.ehlo()
	busy := e.dial()
	busy.ehlo()
	busy.expect("MAIL FROM:<x@foreign.example>", "250 ")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if rest := idle.readEOF(); len(rest) == 0 || !strings.HasPrefix(rest[0], "421 ") {
		t.Fatalf("idle session got %q at shutdown, want 421 and close", rest)
	}
	busy.expect("RCPT TO:<alice@example.com>", "250 ")
	queueID(t, busy.data(msg("x@foreign.example", "alice@example.com", "x")))
	busy.readEOF()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
}

func TestShutdownClosesWhatIsLeftWhenTheContextEnds(t *testing.T) {
	e := newEnv(t, Inbound)
	busy := e.dial()
	busy.ehlo()
	busy.expect("MAIL FROM:<x@foreign.example>", "250 ")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	busy.readEOF()
	waitFor(t, "connections to close", func() bool { return e.srv.ActiveConnections() == 0 })
}

func TestMapError(t *testing.T) {
	cases := map[string]struct {
		err    error
		code   int
		enh    smtp.EnhancedCode
		reason string
	}{
		"a session rejection keeps its code and text": {
			reject(554, smtp.EnhancedCode{5, 7, 1}, "relay_denied", "Relay access denied"), 554, smtp.EnhancedCode{5, 7, 1}, "relay_denied"},
		"a wrapped rejection is still found": {
			fmt.Errorf("spool: reading body: %w", errBareLineEnding), 550, smtp.EnhancedCode{5, 6, 0}, "bare_line_ending"},
		"go-smtp's size error becomes 552 5.3.4": {
			fmt.Errorf("spool: %w", smtp.ErrDataTooLarge), 552, smtp.EnhancedCode{5, 3, 4}, "too_large"},
		"an over-long line becomes 554 5.6.0": {
			fmt.Errorf("spool: %w", smtp.ErrTooLongLine), 554, smtp.EnhancedCode{5, 6, 0}, "line_too_long"},
		"a full disk becomes 452 4.3.1": {
			fmt.Errorf("spool: write: %w: %w", spool.ErrInsufficientStorage, errors.New("no space left on device")), 452, smtp.EnhancedCode{4, 3, 1}, "storage"},
		"a read timeout becomes 451 4.4.2": {
			fmt.Errorf("spool: %w", &net.OpError{Op: "read", Err: timeoutErr{}}), 451, smtp.EnhancedCode{4, 4, 2}, "timeout"},
		"a cancelled context with a deadline becomes 451 4.4.2": {
			context.DeadlineExceeded, 451, smtp.EnhancedCode{4, 4, 2}, "timeout"},
		"an aborted BDAT becomes 451 4.3.0": {
			smtp.ErrDataReset, 451, smtp.EnhancedCode{4, 3, 0}, "aborted"},
		"an unknown error becomes a temporary failure": {
			errors.New("open /var/spool/x: permission denied"), 451, smtp.EnhancedCode{4, 3, 0}, "internal"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			reply, reason := mapError(tc.err)
			if reply.Code != tc.code || reply.EnhancedCode != tc.enh || reason != tc.reason {
				t.Fatalf("mapError = %d %v %q, want %d %v %q", reply.Code, reply.EnhancedCode, reason, tc.code, tc.enh, tc.reason)
			}
			if reply.Message == "" || strings.Contains(reply.Message, "/var/spool") ||
				strings.Contains(reply.Message, "spool:") || strings.Contains(reply.Message, "no space") {
				t.Fatalf("reply text %q is empty or leaks internal details", reply.Message)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// A queue failure reaches the client as a fixed temporary reply, never as its text.
func TestQueueFailureIsNotLeaked(t *testing.T) {
	e := newEnv(t, Inbound)
	e.queue = queueFunc(func(ctx context.Context, env spool.Envelope, body io.Reader) (string, error) {
		_, _ = io.Copy(io.Discard, body)
		return "", errors.New("rename /secret/path/x: input/output error")
	})
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	got := c.data(msg("x@foreign.example", "alice@example.com", "x"))
	if got != "451 4.3.0 "+textTemporary {
		t.Fatalf("reply = %q", got)
	}
	if got := testutil.ToFloat64(e.metrics.Replies.WithLabelValues("451", "4.3.0")); got != 1 {
		t.Errorf("451 4.3.0 replies = %v, want 1", got)
	}
}
