package smtpd

import (
	"slices"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Each MAIL FROM is decided against the config in force now: a live session that keeps
// itself alive with NOOP and RSET cannot outlast the revocation of its login.
func TestRevocationReachesLiveSessions(t *testing.T) {
	tests := map[string]struct {
		user, pass string
		change     func(s *snapshot.Snapshot)
	}{
		"a deleted credential": {"alice-relay", alicePassword, func(s *snapshot.Snapshot) {
			s.Credentials = slices.DeleteFunc(s.Credentials, func(c snapshot.Credential) bool { return c.Username == "alice-relay" })
		}},
		"a credential with a new password": {"alice-relay", alicePassword, func(s *snapshot.Snapshot) {
			hash, err := snapshot.HashPassword("a-new-password-0123456789")
			if err != nil {
				t.Fatal(err)
			}
			s.Credentials[0].PasswordHash = hash
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Submission)
			c := e.submission(tc.user, tc.pass)
			c.expect("MAIL FROM:<alice@example.com>", "250 ")
			c.expect("RCPT TO:<x@foreign.example>", "250 ")
			queueID(t, c.data(msg("alice@example.com", "x@foreign.example", "before")))
			c.expect("NOOP", "250 ")
			c.expect("RSET", "250 ")

			s := testSnapshot(t)
			tc.change(s)
			e.dir.Store(buildDir(t, s))

			c.expect("MAIL FROM:<alice@example.com>", "421 4.7.0 ")
			if rest := c.readEOF(); len(rest) != 0 {
				t.Errorf("after the 421: %q", rest)
			}
		})
	}
}

// A transaction that began before the revocation does not get its message queued.
func TestRevocationStopsATransactionAtData(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.submission("alice-relay", alicePassword)
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")

	s := testSnapshot(t)
	s.Credentials = slices.DeleteFunc(s.Credentials, func(c snapshot.Credential) bool { return c.Username == "alice-relay" })
	e.dir.Store(buildDir(t, s))

	if got := c.data(msg("alice@example.com", "x@foreign.example", "after")); !strings.HasPrefix(got, "421 4.7.0 ") {
		t.Fatalf("DATA after the revocation: %q, want 421 4.7.0", got)
	}
	if n := e.spool.Summary().Messages; n != 0 {
		t.Errorf("the spool holds %d messages", n)
	}
}

// Narrowed allowed senders apply to the next transaction of a session already logged in.
func TestNarrowedSendersReachLiveSessions(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.submission("bob-relay", bobPassword)
	c.expect("MAIL FROM:<noreply@example.com>", "250 ")
	c.expect("RSET", "250 ")

	s := testSnapshot(t)
	s.Credentials[1].AllowedSenders = []string{"billing@example.com"}
	e.dir.Store(buildDir(t, s))

	c.expect("MAIL FROM:<noreply@example.com>", "553 5.7.1 ")
	c.expect("MAIL FROM:<billing@example.com>", "250 ")
}

// A sending server whose network was removed can no longer relay in a session it opened
// before.
func TestRemovedSendingServerStopsRelayingInLiveSessions(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<app@relay.example>", "250 ")
	c.expect("RCPT TO:<y@foreign.example>", "250 ")
	c.expect("RSET", "250 ")

	s := testSnapshot(t)
	for i := range s.Domains {
		if s.Domains[i].Name == "relay.example" {
			s.Domains[i].SendingServers = nil
		}
	}
	e.dir.Store(buildDir(t, s))

	c.expect("MAIL FROM:<app@relay.example>", "250 ")
	if got := c.cmd("RCPT TO:<y@foreign.example>"); !strings.HasPrefix(got, "554 5.7.1 ") {
		t.Fatalf("RCPT to a foreign domain after the sending server was removed: %q, want 554 5.7.1", got)
	}
}
