package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// discardQueue accepts messages and keeps nothing.
type discardQueue struct{}

func (discardQueue) NewID() string { return "Q1" }

func (discardQueue) AcceptSealed(_ context.Context, _ string, env spool.Envelope, body io.Reader, seal func(*spool.Envelope) error, announce func()) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if seal != nil {
		if err := seal(&env); err != nil {
			return err
		}
	}
	if announce != nil {
		announce()
	}
	return nil
}

// inboundRelay runs the relay's port-25 server for dir, asking v about unlisted
// recipients, and returns its address.
func inboundRelay(t *testing.T, dir *directory.Directory, v smtpd.RecipientVerifier) string {
	t.Helper()
	srv := smtpd.New(smtpd.Options{
		Mode: smtpd.Inbound, Hostname: "relay.test",
		Directory:         func() *directory.Directory { return dir },
		Queue:             discardQueue{},
		RecipientVerifier: v,
		Logger:            slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// rcptCode opens a session and returns the reply code to RCPT TO:<to>.
func rcptCode(t *testing.T, addr, to string) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("sender.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("someone@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(to, nil)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return 250
	case errors.As(err, &se):
		return se.Code
	}
	t.Fatalf("RCPT TO:<%s>: %v", to, err)
	return 0
}

func TestSpecWinsOverDiscovery(t *testing.T) {
	downstream := testkit.Start(t)
	downstream.RejectRcpt("nobody@example.com", testkit.Reply(550, "5.1.1", "no such user"))
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Domains: []snapshot.Domain{{
		Name:             "example.com",
		Users:            []snapshot.User{{Address: "jane@example.com", Role: "EndUser"}},
		InvalidAddresses: []string{"old@example.com"},
		InboundDelivery:  &snapshot.Endpoint{Host: "127.0.0.1", Port: downstream.Port},
		DiscoveryPolicy:  "mail/discovery",
	}}, DiscoveryPolicies: []snapshot.DiscoveryPolicy{{Name: "mail/discovery", Threshold: 3, WindowDays: 30, ExpiryDays: 21}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	dir, err := directory.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	v := newVerifier(t, Options{Recorder: rec, Now: newClock().Now})
	relay := inboundRelay(t, dir, v)

	tests := []struct {
		rcpt string
		want int
	}{
		// The spec's user is accepted without asking the domain's server.
		{"jane@example.com", 250},
		// The spec's invalid address stays rejected, though the server would accept it.
		{"old@example.com", 550},
		// Unlisted addresses are decided by a callout.
		{"newbie@example.com", 250},
		{"nobody@example.com", 550},
		// A repeat is answered from the cache.
		{"newbie@example.com", 250},
	}
	for _, tc := range tests {
		if got := rcptCode(t, relay, tc.rcpt); got != tc.want {
			t.Errorf("RCPT TO:<%s>: %d, want %d", tc.rcpt, got, tc.want)
		}
	}
	if n := downstream.Connections(); n != 2 {
		t.Fatalf("the domain's server saw %d callouts, want 2 (newbie and nobody)", n)
	}
	for _, o := range rec.observations() {
		if o.Address == "jane@example.com" || o.Address == "old@example.com" {
			t.Fatalf("recorded %+v for an address the spec lists", o)
		}
	}
}

func TestDeferredVerificationIs450(t *testing.T) {
	downstream := testkit.Start(t)
	downstream.RejectRcpt("busy@example.com", testkit.Reply(451, "4.3.0", "try later"))
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Domains: []snapshot.Domain{{
		Name:            "example.com",
		InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: downstream.Port},
		DiscoveryPolicy: "mail/discovery",
	}}}
	dir, err := directory.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	relay := inboundRelay(t, dir, newVerifier(t, Options{Now: newClock().Now}))
	if got := rcptCode(t, relay, "busy@example.com"); got != 450 {
		t.Fatalf("RCPT for a tempfailed callout: %d, want 450", got)
	}
}
