package smtpd

import (
	"context"
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
)

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
	e.queue = queueFunc(func(ctx context.Context, env spool.Envelope, body io.Reader) error {
		_, _ = io.Copy(io.Discard, body)
		return errors.New("rename /secret/path/x: input/output error")
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
