package delivery

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// A bounce of mail received for a managed domain goes back to the (foreign) sender
// under that domain's Outbound TLS policy, as the domain's own mail to that destination
// would: RequireTLS towards a destination without STARTTLS keeps it queued. The message
// was also for another tenant's domain, b.example, which took it: the bounce speaks for
// a.example, whose recipient failed.
func TestBounceFollowsTheManagedDomainsOutboundPolicy(t *testing.T) {
	h := newHarness(t, Retry{}, func(s *snapshot.Snapshot) {
		s.Domains = append(s.Domains, snapshot.Domain{Name: "b.example", InboundDelivery: s.Domains[0].InboundDelivery})
		s.TLSPolicies = []snapshot.TLSPolicy{{
			Source: snapshot.ObjectRef{Namespace: "ns", Name: "strict-partner"}, Direction: snapshot.DirectionOutbound,
			Domains: []string{"a.example"}, Destinations: []string{"partner.example"}, Mode: snapshot.ModeRequireTLS,
		}}
	})
	partner := h.mx("partner.example", "mx.partner.example", 10) // offers no STARTTLS
	h.sender.RejectRcpt("gone@a.example", testkit.Reply(550, "5.1.1", "no such user"))
	h.start()

	id, err := h.spool.Accept(context.Background(), spool.Envelope{
		Sender: "someone@partner.example", Recipients: []string{"ok@b.example", "gone@a.example"}, Direction: DirectionInbound,
	}, bytes.NewReader([]byte(message("test"))))
	if err != nil {
		t.Fatal(err)
	}
	h.waitGone(id) // bounced: the DSN is queued in its place

	var dsn spool.Message
	eventually(t, "the bounce to be tried once", func() bool {
		for _, m := range h.spool.Due(h.clock.Now().Add(24*time.Hour), 10) {
			if m.Envelope.Sender == "" && len(m.Recipients) == 1 && m.Recipients[0].Attempts > 0 {
				dsn = m
				return true
			}
		}
		return false
	})
	if dsn.Envelope.OnBehalfOf != "a.example" {
		t.Errorf("the bounce speaks for %q, want a.example", dsn.Envelope.OnBehalfOf)
	}
	if rs := dsn.Recipients[0]; rs.Status != spool.StatusPending || !strings.Contains(rs.LastReply, "TLS required") {
		t.Errorf("the bounce's attempt: %+v, want it deferred because TLS is required", rs)
	}
	if n := len(partner.Messages()); n != 0 {
		t.Fatalf("the bounce went to partner.example in plaintext despite a.example's RequireTLS (%d messages)", n)
	}
}

// TLS policies that pass validation but do not compile leave every recipient deferred:
// mail is never sent under a policy weaker than the one configured.
func TestUnusableTLSPoliciesDeferDelivery(t *testing.T) {
	h := newHarness(t, Retry{}, func(s *snapshot.Snapshot) {
		s.TLSPolicies = []snapshot.TLSPolicy{{
			Source: snapshot.ObjectRef{Namespace: "ns", Name: "broken"}, Direction: snapshot.DirectionOutbound,
			Domains: []string{"a.example"}, Mode: snapshot.ModeRequireVerifiedTLS, MinVersion: "1.2",
			CABundlePEM: "not a certificate",
		}}
	})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example", "bob@a.example")
	m := h.waitAttempt(id, 1)
	for _, rs := range m.Recipients {
		if rs.Status != spool.StatusPending || !strings.Contains(rs.LastReply, "4.3.0; ; the relay configuration is not usable") {
			t.Errorf("%s: %+v, want it deferred because the configuration is not usable", rs.Address, rs)
		}
	}
	if n, m := len(dest.Messages()), len(h.sender.Messages()); n+m != 0 {
		t.Fatalf("mail went out under unusable TLS policies: %d to the MX, %d to the inbound server", n, m)
	}
}
