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

	"github.com/prometheus/client_golang/prometheus/testutil"

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

// A pipelined group (RFC 2920) in TLS gets every reply, in order, each with its own
// verdict, and the message after 354 is queued: the server sends what it has written
// before it waits for more input, however it batches the writes.
func TestPipelinedTransactionGetsEveryReplyInOrder(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.submission("alice-relay", alicePassword)
	group := "MAIL FROM:<alice@example.com>\r\n" +
		"RCPT TO:<someone@foreign.example>\r\n" +
		"RCPT TO:<bad address>\r\n" +
		"RCPT TO:<other@foreign.example>\r\n" +
		"DATA\r\n"
	if _, err := io.WriteString(c.conn, group); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"250 ", "250 ", "501 ", "250 ", "354 "} {
		if got := c.reply(); !strings.HasPrefix(got[len(got)-1], want) {
			t.Fatalf("reply %d to the pipelined group = %q, want %q...", i+1, got, want)
		}
	}
	if _, err := io.WriteString(c.conn, msg("alice@example.com", "someone@foreign.example", "hi")+".\r\nRSET\r\nNOOP\r\n"); err != nil {
		t.Fatal(err)
	}
	lines := c.reply()
	env, _ := e.message(queueID(t, lines[len(lines)-1]))
	if want := []string{"someone@foreign.example", "other@foreign.example"}; !slices.Equal(env.Recipients, want) {
		t.Errorf("recipients = %q, want %q", env.Recipients, want)
	}
	c.expect("", "250 ")
	c.expect("", "250 ")
}
