package relay

import (
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestDiscoveryCalloutsFollowTheInboundTLSPolicy(t *testing.T) {
	plain := testkit.Start(t)
	withTLS := testkit.Start(t, testkit.WithCertificate(testkit.SelfSigned(t, "mx.covered.example")))
	s := discoverySnapshot(t, plain)
	s.Domains = append(s.Domains, snapshot.Domain{Name: "tls.example", Source: snapshot.ObjectRef{Namespace: "mail", Name: "tls"},
		InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: withTLS.Port}, DiscoveryPolicy: discoveryPolicy})
	require := func(dir, mode string, domains ...string) snapshot.TLSPolicy {
		return snapshot.TLSPolicy{Source: snapshot.ObjectRef{Namespace: "mail", Name: dir}, Direction: dir,
			Domains: domains, Mode: mode, MinVersion: "1.2"}
	}
	// The Inbound policy governs callouts; tls.example's Outbound one, which its
	// self-signed certificate would fail, does not.
	s.TLSPolicies = []snapshot.TLSPolicy{require(snapshot.DirectionOutbound, snapshot.ModeRequireVerifiedTLS, "tls.example"),
		require(snapshot.DirectionInbound, snapshot.ModeRequireTLS, "covered.example", "tls.example")}
	f := startFileRelay(t, s)
	waitFor(t, "readiness", f.Ready)
	cl := inbound(t, f.Relay, "x@foreign.example")
	for rcpt, want := range map[string]string{
		"new@covered.example": "450 4.1.1", // its server offers no STARTTLS
		"new@tls.example":     "250",       // RequireTLS takes a self-signed certificate
	} {
		if got := reply(cl.Rcpt(rcpt, nil)); got != want {
			t.Errorf("RCPT TO:<%s> = %q, want %q", rcpt, got, want)
		}
	}
	if n := plain.RcptCount("new@covered.example"); n != 0 {
		t.Errorf("the RCPT went out in plaintext despite RequireTLS (%d)", n)
	}
}

func TestDiscoveryCalloutsDeferWhenTheTLSPoliciesDoNotCompile(t *testing.T) {
	dest := testkit.Start(t, testkit.WithCertificate(testkit.SelfSigned(t, "mx.covered.example")))
	s := discoverySnapshot(t, dest)
	// A CA bundle without a certificate passes validation but does not compile.
	s.TLSPolicies = []snapshot.TLSPolicy{{Source: snapshot.ObjectRef{Namespace: "mail", Name: "broken"},
		Direction: snapshot.DirectionInbound, Domains: []string{"plain.example"}, Mode: snapshot.ModeRequireVerifiedTLS,
		MinVersion: "1.2", CABundlePEM: "not a certificate"}}
	f := startFileRelay(t, s)
	waitFor(t, "readiness", f.Ready)
	cl := inbound(t, f.Relay, "x@foreign.example")
	// Opportunistic TLS would accept; with unusable policies nothing is sent unchecked.
	if got := reply(cl.Rcpt("new@covered.example", nil)); got != "450 4.1.1" {
		t.Errorf("RCPT = %q, want 450 4.1.1", got)
	}
	if n := dest.RcptCount("new@covered.example"); n != 0 {
		t.Errorf("the destination was asked %d times", n)
	}
}
