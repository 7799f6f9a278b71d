package discovery

import (
	"context"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

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
			p := &Prober{HELOName: "relay.test", TLSPolicy: func(domain string) tlspolicy.Policy {
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
