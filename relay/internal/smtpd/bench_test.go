package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// BenchmarkAuthAndSenderCheck measures what every submission pays before its message:
// credential lookup and password check among 100k credentials, then MAIL FROM's
// parsing and sender authorization.
func BenchmarkAuthAndSenderCheck(b *testing.B) {
	s := testSnapshot(b)
	for i := range 100_000 {
		s.Credentials = append(s.Credentials, snapshot.Credential{
			Username: fmt.Sprintf("bulk-%06d", i), PasswordHash: aliceHash, Domain: "example.com",
		})
	}
	dir := buildDir(b, s)
	srv := New(Options{
		Mode: Submission, Hostname: testHostname,
		Directory: func() *directory.Directory { return dir },
		Queue:     queueFunc(func(context.Context, spool.Envelope, io.Reader) error { return nil }),
		Logger:    slog.New(slog.DiscardHandler),
		Metrics:   metrics.New(nil),
	})
	c := &conn{id: "bench", ip: netip.MustParseAddr("192.0.2.1"), srv: srv}
	state := &tls.ConnectionState{Version: tls.VersionTLS13}
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		ss := &session{srv: srv, c: c, dir: dir, tls: state, ctx: ctx, cancel: cancel, log: srv.logger}
		if err := ss.authenticate("PLAIN", "", "bulk-054321", alicePassword); err != nil {
			b.Fatal(err)
		}
		if err := ss.Mail("Alice@Example.com", nil); err != nil {
			b.Fatal(err)
		}
		_ = ss.Logout()
	}
}

// BenchmarkSubmissionSession is one whole submission over loopback per iteration:
// connect, EHLO, STARTTLS (a full TLS 1.3 handshake), AUTH, MAIL, RCPT, DATA, QUIT, into
// a queue that discards (the spool has its own benchmarks).
func BenchmarkSubmissionSession(b *testing.B) {
	e := newEnv(b, Submission, withLimits(func(l *Limits) { l.MaxConnectionsPerIP, l.MaxConnectionRatePerIP = 1000, 1_000_000 }))
	e.queue = queueFunc(func(_ context.Context, _ spool.Envelope, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
	m := msg("alice@example.com", "x@foreign.example", "bench")
	b.ReportAllocs()
	for b.Loop() {
		c := e.submission("alice-relay", alicePassword)
		c.expect("MAIL FROM:<alice@example.com>", "250 ")
		c.expect("RCPT TO:<x@foreign.example>", "250 ")
		c.data(m)
		c.expect("QUIT", "221 ")
		c.conn.Close()
	}
}
