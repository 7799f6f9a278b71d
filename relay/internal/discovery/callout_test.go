package discovery

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

// loopback is where the tests' servers listen, allowed explicitly: callouts refuse
// addresses that are not public unless an admin allows their network.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func TestProbeTLS(t *testing.T) {
	ca := testkit.NewCA(t)
	tests := map[string]struct {
		server      []testkit.Option
		policy      tlspolicy.Policy
		want        Outcome
		wantTLS     bool
		connections int
	}{
		"opportunistic TLS is used when offered": {
			server: []testkit.Option{testkit.WithCertificate(testkit.SelfSigned(t, "mx.example.com"))},
			policy: tlspolicy.Default, want: Accepted, wantTLS: true, connections: 1,
		},
		"opportunistic TLS falls back to plaintext after a failed handshake": {
			server: []testkit.Option{testkit.WithHandshakeFailure()},
			policy: tlspolicy.Default, want: Accepted, wantTLS: false, connections: 2,
		},
		"opportunistic without STARTTLS is plaintext": {
			policy: tlspolicy.Default, want: Accepted, wantTLS: false, connections: 1,
		},
		"required TLS without STARTTLS tempfails": {
			policy: tlspolicy.Policy{Mode: tlspolicy.RequireTLS}, want: TempFailed, connections: 1,
		},
		"required TLS accepts an unverified certificate": {
			server: []testkit.Option{testkit.WithCertificate(testkit.SelfSigned(t, "other.invalid"))},
			policy: tlspolicy.Policy{Mode: tlspolicy.RequireTLS}, want: Accepted, wantTLS: true, connections: 1,
		},
		"verified TLS accepts a certificate for the domain from the trusted CA": {
			server: []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "example.com"))},
			policy: tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: ca.Pool()}, want: Accepted, wantTLS: true, connections: 1,
		},
		"verified TLS tempfails on an untrusted certificate": {
			server: []testkit.Option{testkit.WithCertificate(testkit.SelfSigned(t, "example.com"))},
			policy: tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: ca.Pool()}, want: TempFailed, connections: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := testkit.Start(t, tc.server...)
			p := &Prober{HELOName: "relay.test", AllowedNetworks: loopback, TLSPolicy: func(domain string) tlspolicy.Policy {
				if domain != "example.com" {
					t.Errorf("policy asked for %q, want example.com", domain)
				}
				return tc.policy
			}}
			res := p.Probe(context.Background(), "127.0.0.1", srv.Port, "example.com", "bob@example.com")
			if res.Outcome != tc.want || res.TLS != tc.wantTLS {
				t.Fatalf("outcome %v tls %v (code %d, err %v); want %v tls %v", res.Outcome, res.TLS, res.Code, res.Err, tc.want, tc.wantTLS)
			}
			if n := srv.Connections(); n != tc.connections {
				t.Fatalf("server saw %d connections, want %d", n, tc.connections)
			}
		})
	}
}

func TestProbeReplies(t *testing.T) {
	tests := map[string]struct {
		setup    func(s *testkit.Server)
		want     Outcome
		wantCode int
	}{
		"a 2xx to RCPT accepts":                   {func(*testkit.Server) {}, Accepted, 250},
		"a 5xx to RCPT refuses":                   {func(s *testkit.Server) { s.RejectRcpt("bob@example.com", testkit.Reply(550, "5.1.1", "no such user")) }, Refused, 550},
		"a 4xx to RCPT tempfails":                 {func(s *testkit.Server) { s.RejectRcpt("bob@example.com", testkit.Reply(450, "4.2.0", "busy")) }, TempFailed, 450},
		"a refused null sender tempfails":         {func(s *testkit.Server) { s.Inject(testkit.StageMail, testkit.Reply(550, "5.7.1", "no bounces"), -1) }, TempFailed, 550},
		"a refusal at the greeting tempfails":     {func(s *testkit.Server) { s.Inject(testkit.StageConnect, testkit.Reply(421, "4.3.2", "busy"), -1) }, TempFailed, 421},
		"a 5xx greeting tempfails, it is no RCPT": {func(s *testkit.Server) { s.Inject(testkit.StageConnect, testkit.Reply(554, "5.3.2", "no"), -1) }, TempFailed, 554},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := testkit.Start(t)
			tc.setup(srv)
			p := &Prober{HELOName: "relay.test", AllowedNetworks: loopback}
			res := p.Probe(context.Background(), "127.0.0.1", srv.Port, "example.com", "bob@example.com")
			if res.Outcome != tc.want || res.Code != tc.wantCode {
				t.Fatalf("outcome %v code %d (%q, err %v); want %v code %d", res.Outcome, res.Code, res.Reply, res.Err, tc.want, tc.wantCode)
			}
		})
	}
}

func TestProbeRefusesNonPublicAddresses(t *testing.T) {
	d := testkit.StartDNS(t)
	resolver, err := mx.New([]string{d.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.Add(t, "mail.example.com. A 127.0.0.1")
	tests := map[string]struct {
		host    string
		allowed []netip.Prefix
		want    Outcome
	}{
		"an address literal on loopback tempfails":              {host: "127.0.0.1", want: TempFailed},
		"a name that DNS points at loopback tempfails":          {host: "mail.example.com", want: TempFailed},
		"an IPv4-mapped loopback address tempfails":             {host: "::ffff:127.0.0.1", want: TempFailed},
		"loopback is called out to when its network is allowed": {host: "mail.example.com", allowed: loopback, want: Accepted},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := testkit.Start(t)
			p := &Prober{HELOName: "relay.test", Resolver: resolver, AllowedNetworks: tc.allowed}
			res := p.Probe(context.Background(), tc.host, srv.Port, "example.com", "bob@example.com")
			if res.Outcome != tc.want {
				t.Fatalf("outcome %v (err %v), want %v", res.Outcome, res.Err, tc.want)
			}
			if tc.want == Accepted {
				return
			}
			if !errors.Is(res.Err, outbound.ErrNotPublic) || !strings.Contains(res.Err.Error(), "--outbound-allowed-networks") {
				t.Fatalf("err %v, want a refusal of a non-public address naming the flag", res.Err)
			}
			if n := srv.Connections(); n != 0 {
				t.Fatalf("the server saw %d connections", n)
			}
		})
	}
}
