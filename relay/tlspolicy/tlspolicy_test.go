package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

func policy(name, dir, mode string, domains, dests []string) snapshot.TLSPolicy {
	return snapshot.TLSPolicy{
		Source: snapshot.ObjectRef{Namespace: "ns", Name: name}, Direction: dir,
		Domains: domains, Destinations: dests, Mode: mode, MinVersion: "1.2",
	}
}

func TestLookup(t *testing.T) {
	out, in := snapshot.DirectionOutbound, snapshot.DirectionInbound
	m, err := Compile([]snapshot.TLSPolicy{
		policy("any", out, snapshot.ModeRequireTLS, []string{"a.com"}, []string{"*"}),
		policy("wild", out, snapshot.ModeRequireVerifiedTLS, []string{"a.com"}, []string{"*.bank.example"}),
		policy("wild-deeper", out, snapshot.ModeOpportunistic, []string{"a.com"}, []string{"*.eu.bank.example"}),
		policy("exact", out, snapshot.ModeOpportunistic, []string{"a.com"}, []string{"mail.bank.example"}),
		policy("b-exact", out, snapshot.ModeRequireVerifiedTLS, []string{"b.com"}, []string{"partner.example"}),
		policy("clash-weak", out, snapshot.ModeRequireTLS, []string{"b.com"}, []string{"clash.example"}),
		policy("clash-strong", out, snapshot.ModeRequireVerifiedTLS, []string{"b.com"}, []string{"clash.example"}),
		policy("inbound", in, snapshot.ModeRequireVerifiedTLS, []string{"a.com"}, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		dir, domain, dest string
		want              Mode
		source            string
	}{
		"an exact destination beats every wildcard":             {out, "a.com", "mail.bank.example", Opportunistic, "ns/exact"},
		"a *.suffix matches a subdomain":                        {out, "a.com", "x.bank.example", RequireVerifiedTLS, "ns/wild"},
		"the longest *.suffix wins":                             {out, "a.com", "x.eu.bank.example", Opportunistic, "ns/wild-deeper"},
		"a *.suffix does not match the bare suffix":             {out, "a.com", "bank.example", RequireTLS, "ns/any"},
		"* matches what nothing else does":                      {out, "a.com", "gmail.com", RequireTLS, "ns/any"},
		"destinations are case-insensitive with a trailing dot": {out, "A.COM", "X.Bank.Example.", RequireVerifiedTLS, "ns/wild"},
		"another managed domain's policy never applies":         {out, "b.com", "gmail.com", Opportunistic, ""},
		"an unmanaged sender domain gets the default":           {out, "z.com", "partner.example", Opportunistic, ""},
		"the stricter of two clashing policies wins":            {out, "b.com", "clash.example", RequireVerifiedTLS, "ns/clash-strong"},
		"inbound policies apply to the managed domain's server": {in, "a.com", "a.com", RequireVerifiedTLS, "ns/inbound"},
		"outbound policies never apply inbound":                 {in, "b.com", "b.com", Opportunistic, ""},
		"inbound policies never apply outbound":                 {out, "c.com", "a.com", Opportunistic, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := m.Lookup(tc.dir, tc.domain, tc.dest)
			if got.Mode != tc.want || got.Source != tc.source {
				t.Errorf("Lookup(%s, %s, %s) = %s from %q, want %s from %q", tc.dir, tc.domain, tc.dest, got.Mode, got.Source, tc.want, tc.source)
			}
		})
	}
}

func TestCompileRejectsBadInput(t *testing.T) {
	tests := map[string]snapshot.TLSPolicy{
		"an unknown mode is refused":       {Mode: "Sometimes", MinVersion: "1.2"},
		"an unknown minVersion is refused": {Mode: snapshot.ModeRequireTLS, MinVersion: "1.4"},
		"a CA bundle without certificates is refused": {
			Mode: snapshot.ModeRequireVerifiedTLS, MinVersion: "1.2", CABundlePEM: "not pem",
		},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile([]snapshot.TLSPolicy{p}); err == nil {
				t.Fatal("Compile succeeded")
			}
		})
	}
}

func TestVerify(t *testing.T) {
	ca := testkit.NewCA(t)
	other := testkit.NewCA(t)
	leaf := func(c tls.Certificate) []*x509.Certificate { return []*x509.Certificate{c.Leaf} }
	tests := map[string]struct {
		certs   []*x509.Certificate
		names   []string
		wantErr string
	}{
		"the MX host name is accepted":               {leaf(ca.Leaf(t, "mx.dest.example")), []string{"mx.dest.example", "dest.example"}, ""},
		"the recipient domain is accepted":           {leaf(ca.Leaf(t, "dest.example")), []string{"mx.hoster.example", "dest.example"}, ""},
		"a wildcard covers one label":                {leaf(ca.Leaf(t, "*.dest.example")), []string{"mx.dest.example"}, ""},
		"names compare without case":                 {leaf(ca.Leaf(t, "MX.Dest.Example")), []string{"mx.dest.example."}, ""},
		"a wildcard never covers two labels":         {leaf(ca.Leaf(t, "*.example")), []string{"a.dest.example"}, "certificate name mismatch: got *.example, want a.dest.example"},
		"a wildcard never covers the bare domain":    {leaf(ca.Leaf(t, "*.dest.example")), []string{"dest.example"}, "certificate name mismatch: got *.dest.example, want dest.example"},
		"a wildcard on a public suffix matches none": {leaf(ca.Leaf(t, "*.com")), []string{"dest.com"}, "certificate name mismatch: got *.com"},
		"a partial-label wildcard matches nothing":   {leaf(ca.Leaf(t, "m*.dest.example")), []string{"mx.dest.example"}, "certificate name mismatch"},
		"the wrong name is reported with both wants": {leaf(ca.Leaf(t, "*.other.example")), []string{"mx.dest.example", "dest.example"}, "certificate name mismatch: got *.other.example, want mx.dest.example or dest.example"},
		"an IP endpoint matches an IP SAN":           {leaf(ca.Leaf(t, "127.0.0.1")), []string{"127.0.0.1"}, ""},
		"an untrusted issuer is refused":             {leaf(other.Leaf(t, "mx.dest.example")), []string{"mx.dest.example"}, "certificate not trusted: x509: certificate signed by unknown authority"},
		"a self-signed certificate is refused":       {leaf(testkit.SelfSigned(t, "mx.dest.example")), []string{"mx.dest.example"}, "certificate not trusted"},
		"no certificate is refused":                  {nil, []string{"mx.dest.example"}, "no certificate presented"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Verify(tc.certs, ca.Pool(), tc.names...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("Verify error = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

// handshake runs a real TLS handshake over loopback between a server presenting cert and
// a client configured for p.
func handshake(t *testing.T, p Policy, cert tls.Certificate, mx, domain string) (*Check, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg, check := p.ClientConfig(mx, domain)
	return check, tls.Client(conn, cfg).Handshake()
}

func TestClientConfig(t *testing.T) {
	ca := testkit.NewCA(t)
	wrong := ca.Leaf(t, "*.other.example")
	tests := map[string]struct {
		mode         Mode
		cert         tls.Certificate
		wantHandshak bool
		wantVerified bool
	}{
		"opportunistic accepts a wrong name and records it":    {Opportunistic, wrong, true, false},
		"require-tls accepts a self-signed certificate":        {RequireTLS, testkit.SelfSigned(t, "mx.dest.example"), true, false},
		"require-verified refuses a wrong name":                {RequireVerifiedTLS, wrong, false, false},
		"require-verified accepts the recipient domain's name": {RequireVerifiedTLS, ca.Leaf(t, "dest.example"), true, true},
		"opportunistic records a verified peer":                {Opportunistic, ca.Leaf(t, "mx.dest.example"), true, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := Policy{Mode: tc.mode, Roots: ca.Pool()}
			check, err := handshake(t, p, tc.cert, "mx.dest.example", "dest.example")
			if (err == nil) != tc.wantHandshak {
				t.Fatalf("handshake error = %v, want success %v", err, tc.wantHandshak)
			}
			if check.Verified != tc.wantVerified {
				t.Fatalf("Verified = %v (%v), want %v", check.Verified, check.Err, tc.wantVerified)
			}
			if !tc.wantHandshak && !strings.Contains(err.Error(), "certificate name mismatch: got *.other.example") {
				t.Fatalf("handshake error %q does not say why", err)
			}
		})
	}
}

func TestMinVersionIsHonoured(t *testing.T) {
	ca := testkit.NewCA(t)
	p := Policy{Mode: RequireTLS, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, "mx.example")}, MaxVersion: tls.VersionTLS12}).Handshake()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg, _ := p.ClientConfig("mx.example", "example")
	if err := tls.Client(conn, cfg).Handshake(); err == nil {
		t.Fatal("a TLS 1.2 server was accepted under minVersion 1.3")
	}
}

func BenchmarkLookup10000Policies(b *testing.B) {
	var ps []snapshot.TLSPolicy
	for i := range 10000 {
		ps = append(ps, policy(fmt.Sprint(i), snapshot.DirectionOutbound, snapshot.ModeRequireTLS,
			[]string{fmt.Sprintf("d%d.com", i%100)}, []string{fmt.Sprintf("*.p%d.example", i), fmt.Sprintf("x%d.example", i)}))
	}
	m, err := Compile(ps)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Lookup(snapshot.DirectionOutbound, "d42.com", "a.b.c.p4242.example")
	}
}

func TestDefaultMinVersion(t *testing.T) {
	tests := map[string]struct {
		p    Policy
		want uint16
	}{
		"opportunistic takes TLS 1.0 rather than plaintext": {Policy{Mode: Opportunistic}, tls.VersionTLS10},
		"a required mode defaults to TLS 1.2":               {Policy{Mode: RequireTLS}, tls.VersionTLS12},
		"a stated minimum is kept":                          {Policy{Mode: Opportunistic, MinVersion: tls.VersionTLS13}, tls.VersionTLS13},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if cfg, _ := tc.p.ClientConfig("mx.example", "example"); cfg.MinVersion != tc.want {
				t.Fatalf("MinVersion = %x, want %x", cfg.MinVersion, tc.want)
			}
		})
	}
}
