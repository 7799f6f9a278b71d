package relay

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// limitedSnapshot is newSnapshot with alice's limits set and the number of relays that
// share them.
func limitedSnapshot(t *testing.T, limits snapshot.Limits, relays int) *snapshot.Snapshot {
	t.Helper()
	a, _ := creds(t)
	s := newSnapshot(t, certEntry, a)
	s.Credentials[0].Limits = &limits
	s.Relays = relays
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

// startReadyRelay is startFileRelay that waits until the relay serves mail (config and
// certificate loaded), so the first login does not race the first load.
func startReadyRelay(t *testing.T, s *snapshot.Snapshot) *fileRelay {
	t.Helper()
	f := startFileRelay(t, s)
	waitFor(t, "readiness", f.Ready)
	return f
}

// trySend logs in to f as alice and sends one message to n recipients; it returns the
// relay's refusal, if any.
func trySend(t *testing.T, f *fileRelay, n int) error {
	t.Helper()
	a, _ := creds(t)
	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Mail("sender@"+a.domain, nil); err != nil {
		return err
	}
	for i := range n {
		if err := cl.Rcpt(string(rune('a'+i))+"@elsewhere.example", nil); err != nil {
			return err
		}
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte("From: <sender@" + a.domain + ">\r\nSubject: limits\r\n\r\nhello\r\n")); err != nil {
		return err
	}
	return w.Close()
}

// wantRefusal checks err is the SMTP reply code/enhanced with text in its message.
func wantRefusal(t *testing.T, err error, code int, enhanced smtp.EnhancedCode, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enhanced || !strings.Contains(se.Message, text) {
		t.Fatalf("got %v, want %d %v ...%s...", err, code, enhanced, text)
	}
}

// Two relays that share a credential's limits (the operator counted two live
// replicas) admit, together, the limit: each its half, rounded up. Over it, MAIL gets
// 451 4.7.1 naming the credential's own limit.
func TestSendingLimitsHoldAcrossTwoRelays(t *testing.T) {
	const limit = 9
	s := limitedSnapshot(t, snapshot.Limits{MessagesPerWindow: limit, WindowSeconds: 600}, 2)
	relays := []*fileRelay{startReadyRelay(t, s), startReadyRelay(t, s)}
	accepted := 0
	var refused error
	for i := range 3 * limit {
		err := trySend(t, relays[i%2], 1)
		if err == nil {
			accepted++
			continue
		}
		refused = err
	}
	t.Logf("two relays accepted %d of %d messages under a limit of %d", accepted, 3*limit, limit)
	// The stated bound: the limit plus one per relay for the rounding (ceil(9/2) = 5).
	if accepted < limit || accepted > limit+len(relays)-1 {
		t.Errorf("two relays accepted %d messages, want between %d and %d", accepted, limit, limit+len(relays)-1)
	}
	wantRefusal(t, refused, 451, smtp.EnhancedCode{4, 7, 1}, "this login may send 9 messages in 10m0s")
}

// A daily limit refuses with 550 5.7.1; recipients beyond the per-message limit get
// 452 4.5.3, and the message goes out to those before them.
func TestDailyAndRecipientLimitsOnTheWire(t *testing.T) {
	f := startReadyRelay(t, limitedSnapshot(t, snapshot.Limits{MessagesPerDay: 2, RecipientsPerMessage: 2}, 1))
	wantRefusal(t, trySend(t, f, 3), 452, smtp.EnhancedCode{4, 5, 3}, "at most 2 per message")
	for range 2 {
		if err := trySend(t, f, 2); err != nil {
			t.Fatal(err)
		}
	}
	wantRefusal(t, trySend(t, f, 1), 550, smtp.EnhancedCode{5, 7, 1}, "this login may send 2 messages in 24 hours")
	metrics := scrapeMetrics(t, f.Relay, "postwarden_relay_smtp_credential_messages_total")
	if got := metrics[`postwarden_relay_smtp_credential_messages_total{credential="mail/alice-relay",result="sent"}`]; got != 2 {
		t.Errorf("sent = %v, want 2", got)
	}
	if got := metrics[`postwarden_relay_smtp_credential_messages_total{credential="mail/alice-relay",result="limited"}`]; got != 2 {
		t.Errorf("limited = %v, want 2", got)
	}
}

// A new limit applies from the reload on, to what was already counted; and revoking
// the credential wins over its limits: the client hears that its login is gone, not
// to wait for the window.
func TestLimitChangeAppliesAtReloadAndRevocationWins(t *testing.T) {
	s := limitedSnapshot(t, snapshot.Limits{MessagesPerWindow: 2, WindowSeconds: 600}, 1)
	f := startReadyRelay(t, s)
	for range 2 {
		if err := trySend(t, f, 1); err != nil {
			t.Fatal(err)
		}
	}
	wantRefusal(t, trySend(t, f, 1), 451, smtp.EnhancedCode{4, 7, 1}, "2 messages")

	s.Credentials[0].Limits.MessagesPerWindow = 3
	written := time.Now()
	writeConfig(t, f.config, s)
	waitFor(t, "the relay applies the new limit", func() bool { return f.reload.Hash() == s.Hash })
	t.Logf("the new limit applied %v after the config was written", time.Since(written).Round(time.Millisecond))
	if err := trySend(t, f, 1); err != nil {
		t.Fatalf("under the raised limit: %v", err)
	}
	wantRefusal(t, trySend(t, f, 1), 451, smtp.EnhancedCode{4, 7, 1}, "3 messages")

	// Revoked while over its limit, in a session that logged in before.
	a, _ := creds(t)
	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s.Credentials = nil
	writeConfig(t, f.config, s)
	waitFor(t, "the relay applies the revocation", func() bool { return f.reload.Hash() == s.Hash })
	wantRefusal(t, cl.Mail("sender@"+a.domain, nil), 421, smtp.EnhancedCode{4, 7, 0}, "no longer valid")
}
