package smtpd

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/directory"
)

func TestInboundRecipients(t *testing.T) {
	cases := map[string]struct {
		from, rcpt string
		want       string
		// stored is the queued recipient when the reply is 250.
		stored string
	}{
		"a registered user is accepted":                          {"x@foreign.example", "alice@example.com", "250 ", "alice@example.com"},
		"a user in another case is accepted in the managed form": {"x@foreign.example", "Alice@EXAMPLE.com", "250 ", "alice@example.com"},
		"a functional account is accepted":                       {"x@foreign.example", "billing@example.com", "250 ", "billing@example.com"},
		"an alias is delivered to its primary address":           {"x@foreign.example", "al@example.com", "250 ", "alice@example.com"},
		"an alias of an outbound-only address stays as it is":    {"x@foreign.example", "oa@example.com", "250 ", "oa@example.com"},
		"a user found by SMTP Discovery is accepted":             {"x@foreign.example", "found@example.com", "250 ", "found@example.com"},
		"a pending discovered address is accepted":               {"x@foreign.example", "seen@example.com", "250 ", "seen@example.com"},
		"an expired discovered address gets 550 5.1.1":           {"x@foreign.example", "expired@example.com", "550 5.1.1 <expired@example.com>: Recipient address rejected: address is not valid", ""},
		"the null sender may write to a user":                    {"", "alice@example.com", "250 ", "alice@example.com"},
		"an invalid address gets 550 5.1.1":                      {"x@foreign.example", "gone@example.com", "550 5.1.1 <gone@example.com>: Recipient address rejected: address is not valid", ""},
		"an unknown address gets 550 5.1.1":                      {"x@foreign.example", "nobody@example.com", "550 5.1.1 <nobody@example.com>: Recipient address rejected: user unknown", ""},
		"a foreign recipient gets 554 5.7.1 Relay access denied": {"x@foreign.example", "y@foreign.example", "554 5.7.1 <y@foreign.example>: Relay access denied", ""},
		"a sender in a managed domain does not open the relay":   {"alice@example.com", "y@foreign.example", "554 5.7.1 ", ""},
		"the percent hack is refused":                            {"x@foreign.example", "y%foreign.example@example.com", "553 5.1.3 ", ""},
		"a bang path is refused":                                 {"x@foreign.example", "foreign.example!y@example.com", "553 5.1.3 ", ""},
		"a source route is ignored, leaving a foreign recipient": {"x@foreign.example", "@example.com:y@foreign.example", "554 5.7.1 ", ""},
		"a quoted local part hiding an @ is refused":             {"x@foreign.example", `"y@foreign.example"@example.com`, "553 5.1.3 ", ""},
		"user@other@local is refused":                            {"x@foreign.example", "y@foreign.example@example.com", "553 5.1.3 ", ""},
		"a trailing dot is refused":                              {"x@foreign.example", "alice@example.com.", "553 5.1.3 ", ""},
		"an address literal is refused":                          {"x@foreign.example", "y@[127.0.0.1]", "553 5.1.3 ", ""},
		"a managed domain without inbound delivery is refused":   {"x@foreign.example", "o@outonly.example", "550 5.7.1 ", ""},
		"a sending server relays for its domain's senders":       {"app@relay.example", "y@foreign.example", "250 ", "y@foreign.example"},
		"a sending server of a domain requiring AUTH does not":   {"x@locked.example", "y@foreign.example", "554 5.7.1 ", ""},
		"a sending server does not relay for other senders":      {"x@foreign.example", "y@foreign.example", "554 5.7.1 ", ""},
		"a sending server does not relay for other managed ones": {"alice@example.com", "y@foreign.example", "554 5.7.1 ", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Inbound)
			c := e.dial()
			c.ehlo()
			c.expect("MAIL FROM:<"+tc.from+">", "250 ")
			got := c.cmd("RCPT TO:<" + tc.rcpt + ">")
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("RCPT TO:<%s> = %q, want %q...", tc.rcpt, got, tc.want)
			}
			if tc.stored == "" {
				return
			}
			from := tc.from
			if from == "" {
				from = "mailer-daemon@foreign.example"
			}
			id := queueID(t, c.data(msg(from, tc.rcpt, "hello")))
			env, body := e.message(id)
			if !slices.Equal(env.Recipients, []string{tc.stored}) || env.AuthUser != "" {
				t.Errorf("envelope = %+v, want recipient %q and no auth user", env, tc.stored)
			}
			wantDir := "inbound"
			if strings.HasSuffix(tc.from, "@relay.example") {
				wantDir = "outbound"
			}
			if env.Direction != wantDir {
				t.Errorf("direction = %q, want %q", env.Direction, wantDir)
			}
			if !strings.Contains(body, "with ESMTP id ") || !strings.Contains(body, "for <"+tc.stored+">") {
				t.Errorf("Received: header of a plaintext inbound message is wrong:\n%s", body)
			}
		})
	}
}

// TestAliasAndItsPrimaryAddressAreQueuedOnce: a message to an alias and to its primary
// address reaches that mailbox once.
func TestAliasAndItsPrimaryAddressAreQueuedOnce(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<al@example.com>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<bob@example.com>", "250 ")
	env, _ := e.message(queueID(t, c.data(msg("x@foreign.example", "al@example.com", "hello"))))
	if want := []string{"alice@example.com", "bob@example.com"}; !slices.Equal(env.Recipients, want) {
		t.Errorf("queued recipients %q, want %q", env.Recipients, want)
	}
}

func TestInboundOffersSTARTTLSButNoAUTH(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	caps := c.ehlo()
	if !slices.Contains(caps, "STARTTLS") {
		t.Errorf("STARTTLS not offered on port 25: %q", caps)
	}
	c.starttls()
	caps = c.ehlo()
	if slices.ContainsFunc(caps, func(s string) bool { return strings.HasPrefix(s, "AUTH") }) {
		t.Errorf("AUTH offered on port 25: %q", caps)
	}
	c.expect("AUTH PLAIN "+plain("", "alice-relay", alicePassword), "502 5.5.1 ")
	// STARTTLS is optional: a plaintext session delivers too.
	c2 := e.dial()
	c2.ehlo()
	c2.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c2.expect("RCPT TO:<alice@example.com>", "250 ")
	queueID(t, c2.data(msg("x@foreign.example", "alice@example.com", "plain")))
}

func TestInboundWithoutTLSConfigDoesNotOfferSTARTTLS(t *testing.T) {
	e := newEnv(t, Inbound, func(o *Options) { o.TLSConfig = nil })
	c := e.dial()
	if caps := c.ehlo(); slices.Contains(caps, "STARTTLS") {
		t.Errorf("STARTTLS offered without a certificate: %q", caps)
	}
}

func TestSendingServerFromHeader(t *testing.T) {
	cases := map[string]struct {
		from string
		want string
	}{
		"a From: in the server's domain is accepted":   {"App <app@relay.example>", "250 "},
		"any address of the domain may be in From:":    {"other@relay.example", "250 "},
		"a From: in another domain is refused":         {"ceo@bank.example", "553 5.7.1 "},
		"a From: in another managed domain is refused": {"alice@example.com", "553 5.7.1 "},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Inbound)
			c := e.dial()
			c.ehlo()
			c.expect("MAIL FROM:<app@relay.example>", "250 ")
			c.expect("RCPT TO:<y@foreign.example>", "250 ")
			if got := c.data(msg(tc.from, "y@foreign.example", "x")); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("DATA = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSendingServerIsMatchedByClientIP(t *testing.T) {
	e := newEnv(t, Inbound, func(o *Options) {
		o.ClientIP = func(string) netip.Addr { return netip.MustParseAddr("203.0.113.9") }
	})
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<app@relay.example>", "250 ")
	c.expect("RCPT TO:<y@foreign.example>", "554 5.7.1 ")
}

type verifierFunc func(ctx context.Context, d *directory.Domain, addr string) (Verdict, error)

func (f verifierFunc) VerifyRecipient(ctx context.Context, d *directory.Domain, addr string) (Verdict, error) {
	return f(ctx, d, addr)
}

func TestRecipientVerifierHook(t *testing.T) {
	var asked []string
	e := newEnv(t, Inbound, func(o *Options) {
		o.RecipientVerifier = verifierFunc(func(_ context.Context, d *directory.Domain, addr string) (Verdict, error) {
			asked = append(asked, addr)
			switch addr {
			case "new@example.com":
				return VerdictAccept, nil
			case "later@example.com":
				return VerdictDefer, nil
			}
			return VerdictUnknown, nil
		})
	})
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<New@example.com>", "250 ")
	c.expect("RCPT TO:<later@example.com>", "450 4.1.1 ")
	c.expect("RCPT TO:<nobody@example.com>", "550 5.1.1 ")
	c.expect("RCPT TO:<gone@example.com>", "550 5.1.1 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	if want := []string{"new@example.com", "later@example.com", "nobody@example.com"}; !slices.Equal(asked, want) {
		t.Errorf("verifier asked about %q, want only unlisted addresses %q", asked, want)
	}
}

type observerFunc func(e directory.Entry, sender string)

func (f observerFunc) OutboundSender(e directory.Entry, sender string) { f(e, sender) }

func TestObserverHearsOfSendingServerSenders(t *testing.T) {
	var mu sync.Mutex
	got := map[string]directory.Kind{}
	e := newEnv(t, Inbound, func(o *Options) {
		o.Observer = observerFunc(func(en directory.Entry, sender string) {
			mu.Lock()
			defer mu.Unlock()
			got[sender] = en.Kind
		})
	})
	c := e.dial()
	c.ehlo()
	send := func(from, header, want string) {
		t.Helper()
		c.expect("MAIL FROM:<"+from+">", "250 ")
		c.expect("RCPT TO:<y@foreign.example>", "250 ")
		if r := c.data(msg(header, "y@foreign.example", "x")); !strings.HasPrefix(r, want) {
			t.Fatalf("DATA from %s = %q, want %q", from, r, want)
		}
	}
	send("app@relay.example", "app@relay.example", "250 ")
	send("New.Person@Relay.example", "new.person@relay.example", "250 ")
	send("refused@relay.example", "ceo@bank.example", "553 ")
	// Inbound mail from elsewhere is not a sending server's.
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	if r := c.data(msg("x@foreign.example", "alice@example.com", "x")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("inbound DATA = %q", r)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]directory.Kind{"app@relay.example": directory.KindUser, "new.person@relay.example": directory.KindUnknown}
	if !maps.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}
