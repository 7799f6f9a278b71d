package compiled_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

func policy(direction, mode string, domains, destinations []string) snapshot.TLSPolicy {
	return snapshot.TLSPolicy{Source: snapshot.ObjectRef{Namespace: "ns", Name: strings.ToLower(direction + "-" + mode)},
		Direction: direction, Domains: domains, Destinations: destinations, Mode: mode, MinVersion: "1.2"}
}

func testSnapshot() *snapshot.Snapshot {
	return &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Hash:       "0123456789abcdef",
		Domains: []snapshot.Domain{
			{Name: "in.example", InboundDelivery: &snapshot.Endpoint{Host: "mail.in.example", Port: 25},
				Users: []snapshot.User{{Address: "alice@in.example"}}, DiscoveryPolicy: "ns/auto"},
			{Name: "out.example", DiscoveryPolicy: "ns/manual"},
		},
		DiscoveryPolicies: []snapshot.DiscoveryPolicy{
			{Name: "ns/auto", Threshold: 1, WindowDays: 1, ExpiryDays: 1, AutoAddOutboundUsers: true},
			{Name: "ns/manual", Threshold: 1, WindowDays: 1, ExpiryDays: 1},
		},
		TLSPolicies: []snapshot.TLSPolicy{
			policy(snapshot.DirectionInbound, snapshot.ModeRequireTLS, []string{"in.example"}, nil),
			policy(snapshot.DirectionOutbound, snapshot.ModeRequireVerifiedTLS, []string{"out.example"}, []string{"partner.example"}),
		},
	}
}

func TestBuildHoldsEveryReadersFacts(t *testing.T) {
	s := testSnapshot()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	certs, _ := tlscert.NewSet(nil, "")
	v, err := compiled.Build(s, certs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Hash() != s.Hash || v.Certificates() != certs || v.TLSErr() != nil {
		t.Fatalf("hash %q, certificates %p, TLS error %v", v.Hash(), v.Certificates(), v.TLSErr())
	}
	if e := v.Directory().Lookup("alice@in.example"); e.Domain == nil || e.Domain.Name != "in.example" {
		t.Fatalf("the directory does not know alice: %+v", e)
	}
	if d := v.Domain("in.example"); d == nil || d.InboundDelivery == nil || d.InboundDelivery.Host != "mail.in.example" {
		t.Fatalf("in.example's own server: %+v", d)
	}
	if d := v.Domain("out.example"); d == nil || d.InboundDelivery != nil {
		t.Fatalf("out.example is managed and outbound-only: %+v", d)
	}
	if v.Domain("foreign.example") != nil {
		t.Fatal("an unmanaged domain is managed")
	}
	for name, tc := range map[string]struct {
		got  tlspolicy.Policy
		want tlspolicy.Mode
	}{
		"a managed domain's own server gets its Inbound policy":       {v.InboundTLS("in.example"), tlspolicy.RequireTLS},
		"mail to a named destination gets the Outbound policy":        {v.TLSPolicy(snapshot.DirectionOutbound, "out.example", "partner.example"), tlspolicy.RequireVerifiedTLS},
		"mail to another destination gets the default":                {v.TLSPolicy(snapshot.DirectionOutbound, "out.example", "other.example"), tlspolicy.Opportunistic},
		"a domain without an Inbound policy gets the default inbound": {v.InboundTLS("out.example"), tlspolicy.Opportunistic},
	} {
		if tc.got.Mode != tc.want {
			t.Errorf("%s: got %s, want %s", name, tc.got.Mode, tc.want)
		}
	}
	if !v.AutoAddsOutbound("ns/auto") || v.AutoAddsOutbound("ns/manual") || v.AutoAddsOutbound("ns/missing") {
		t.Error("AutoAddsOutbound does not follow the discovery policies")
	}
}

func TestPoliciesThatDoNotCompileAreSatisfiedByNothing(t *testing.T) {
	s := testSnapshot()
	s.TLSPolicies[0].CABundlePEM = "not a certificate"
	if err := s.Validate(); err != nil {
		t.Fatalf("the snapshot should pass validation: %v", err)
	}
	v, err := compiled.Build(s, nil, nil)
	if err != nil {
		t.Fatalf("the rest of the snapshot is usable: %v", err)
	}
	if v.TLSErr() == nil {
		t.Fatal("no TLS error")
	}
	if v.Directory().Domain("in.example") == nil {
		t.Fatal("the directory was not built")
	}
	for name, p := range map[string]tlspolicy.Policy{
		"inbound":                      v.InboundTLS("in.example"),
		"outbound to a named partner":  v.TLSPolicy(snapshot.DirectionOutbound, "out.example", "partner.example"),
		"a domain no policy mentioned": v.TLSPolicy(snapshot.DirectionOutbound, "other.example", "x.example"),
	} {
		if p.Mode != tlspolicy.RequireVerifiedTLS || p.Roots == nil || !p.Roots.Equal(x509.NewCertPool()) {
			t.Errorf("%s: got %+v, want verified TLS against no roots", name, p)
		}
	}
}

func TestBuildRefusesWhatTheDirectoryCannotHold(t *testing.T) {
	s := testSnapshot()
	s.Domains[0].FunctionalAccounts = []string{"alice@in.example"}
	if _, err := compiled.Build(s, nil, nil); err == nil || !strings.Contains(err.Error(), "alice@in.example") {
		t.Fatalf("got %v, want an error naming the address listed twice", err)
	}
}

func TestWithSecretsCompilesNothingAgain(t *testing.T) {
	v, err := compiled.Build(testSnapshot(), nil, map[string]map[string][]byte{"old": {"username": []byte("u"), "password": []byte("p1")}})
	if err != nil {
		t.Fatal(err)
	}
	certs, _ := tlscert.NewSet(nil, "")
	next := v.WithSecrets(certs, map[string]map[string][]byte{"new": {"username": []byte("u"), "password": []byte("p2")}})
	if next.Directory() != v.Directory() || next.Hash() != v.Hash() {
		t.Fatal("the new view does not share the compiled directory")
	}
	if next.Certificates() != certs || v.Certificates() != nil {
		t.Fatal("the certificates were not replaced in the new view alone")
	}
	if c, ok := next.RouteCredentials("new"); !ok || c.Password != "p2" {
		t.Errorf("the new view's credentials: %+v, %v", c, ok)
	}
	if _, ok := next.RouteCredentials("old"); ok {
		t.Error("the new view kept credentials the update no longer has")
	}
	if c, ok := v.RouteCredentials("old"); !ok || c.Password != "p1" {
		t.Errorf("the old view changed: %+v, %v", c, ok)
	}
}

func TestNilViewIsAnEmptyConfig(t *testing.T) {
	var v *compiled.View
	if v.Hash() != "" || v.Directory() != nil || v.Certificates() != nil || v.Domain("in.example") != nil ||
		v.TLSErr() != nil || v.AutoAddsOutbound("ns/auto") || v.DKIM().Keys("out.example") != nil {
		t.Fatal("a nil view holds something")
	}
	if p := v.InboundTLS("in.example"); p != tlspolicy.Default {
		t.Fatalf("a nil view's policy is %+v, want the default", p)
	}
}

// The DKIM keys are parsed when the view is built and follow the relay secrets of each
// update; a key whose secret is missing is left out and reported, never the others.
func TestDKIMKeysFollowTheSecrets(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string][]byte{"out-dkim": {snapshot.DKIMPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}}
	s := testSnapshot()
	s.Domains[1].DKIM = []snapshot.DKIMKey{{Selector: "ed1", Algorithm: snapshot.DKIMEd25519SHA256, SecretName: "out-dkim"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := compiled.Build(s, nil, secrets)
	if err != nil {
		t.Fatal(err)
	}
	keys := v.DKIM().Keys("out.example")
	if len(keys) != 1 || keys[0].Selector != "ed1" || !key.Equal(keys[0].Signer) || len(v.DKIM().Problems()) != 0 {
		t.Fatalf("keys %+v, problems %q", keys, v.DKIM().Problems())
	}
	if v.DKIM().Keys("in.example") != nil {
		t.Error("a domain without DKIM keys has keys")
	}
	gone := v.WithSecrets(nil, nil)
	if gone.DKIM().Keys("out.example") != nil || len(gone.DKIM().Problems()) != 1 {
		t.Errorf("without its secret: keys %+v, problems %q", gone.DKIM().Keys("out.example"), gone.DKIM().Problems())
	}
	if back := gone.WithSecrets(nil, secrets); len(back.DKIM().Keys("out.example")) != 1 {
		t.Error("the key did not come back with its secret")
	}
}
