package smtpd

import (
	"crypto/tls"
	"sync"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

const testHostname = "relay.test.example"

// testPKI is a CA and a server certificate for testHostname, localhost and 127.0.0.1,
// made once per test binary.
type testPKI struct {
	server *tls.Config
	client *tls.Config
	caPEM  []byte
}

var makePKI = sync.OnceValues(func() (testPKI, error) {
	ca, err := testkit.GenerateCA()
	if err != nil {
		return testPKI{}, err
	}
	cert, err := ca.Issue(testkit.Names(testHostname, "localhost", "127.0.0.1"))
	if err != nil {
		return testPKI{}, err
	}
	return testPKI{
		server: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return &cert, nil
			},
		},
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: testHostname, MinVersion: tls.VersionTLS12},
		caPEM:  []byte(ca.PEM()),
	}, nil
})

func newPKI(t testing.TB) testPKI {
	t.Helper()
	pki, err := makePKI()
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

// Passwords of the test credentials.
const (
	alicePassword = "alice-password-0123456789"
	bobPassword   = "bob-password-0123456789"
)

var (
	hashOnce           sync.Once
	aliceHash, bobHash string
)

// testSnapshot: example.com (users, functional, alias, invalid; inbound delivery),
// relay.example (127.0.0.1 is a sending server), locked.example (127.0.0.1 is a sending
// server but AUTH is required), outonly.example (no inbound delivery). Credentials:
// alice-relay sends as any address of example.com; bob-relay only as noreply@example.com.
func testSnapshot(t testing.TB) *snapshot.Snapshot {
	hashOnce.Do(func() {
		aliceHash, _ = snapshot.HashPassword(alicePassword)
		bobHash, _ = snapshot.HashPassword(bobPassword)
	})
	mx := &snapshot.Endpoint{Host: "mx.internal.example", Port: 25}
	s := &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Domains: []snapshot.Domain{
			{
				Name:               "example.com",
				Users:              []snapshot.User{{Address: "alice@example.com"}, {Address: "bob@example.com"}},
				FunctionalAccounts: []string{"billing@example.com", "noreply@example.com"},
				Aliases: []snapshot.Alias{{Address: "al@example.com", Target: "alice@example.com"},
					{Address: "oa@example.com", Target: "o@outonly.example"}},
				InvalidAddresses: []string{"gone@example.com"},
				InboundDelivery:  mx,
				Discovered: []snapshot.DiscoveredAddress{
					{Address: "found@example.com", State: snapshot.DiscoveredUser},
					{Address: "seen@example.com", State: snapshot.DiscoveredPending},
					{Address: "expired@example.com", State: snapshot.DiscoveredInvalid},
				},
			},
			{Name: "relay.example", Users: []snapshot.User{{Address: "app@relay.example"}},
				SendingServers: []string{"127.0.0.1/32"}, InboundDelivery: mx},
			{Name: "locked.example", SendingServers: []string{"127.0.0.0/8"}, RequireSMTPAuth: true,
				Users: []snapshot.User{{Address: "x@locked.example"}}, InboundDelivery: mx},
			{Name: "outonly.example", Users: []snapshot.User{{Address: "o@outonly.example"}}},
		},
		Credentials: []snapshot.Credential{
			{Username: "alice-relay", PasswordHash: aliceHash, Domain: "example.com"},
			{Username: "bob-relay", PasswordHash: bobHash, Domain: "example.com",
				AllowedSenders: []string{"noreply@example.com"}},
		},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

func buildDir(t testing.TB, s *snapshot.Snapshot) *directory.Directory {
	t.Helper()
	d, err := directory.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
