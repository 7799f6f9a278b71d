package directory

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

func mustHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := snapshot.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testSnapshot(t testing.TB) *snapshot.Snapshot {
	s := &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Domains: []snapshot.Domain{
			{
				Name:               "example.com",
				Users:              []snapshot.User{{Address: "alice@example.com", Role: "EndUser"}},
				FunctionalAccounts: []string{"billing@example.com"},
				Aliases:            []snapshot.Alias{{Address: "al@example.com", Target: "alice@example.com"}},
				InvalidAddresses:   []string{"gone@example.com"},
				SendingServers:     []string{"192.0.2.0/24", "2001:db8::/32"},
				InboundDelivery:    &snapshot.Endpoint{Host: "mx.example.com", Port: 25},
			},
			{
				Name:            "example.org",
				Users:           []snapshot.User{{Address: "bob@example.org"}},
				SendingServers:  []string{"192.0.2.128/25", "198.51.100.7/32"},
				RequireSMTPAuth: true,
			},
		},
		Credentials: []snapshot.Credential{
			{Username: "alice-relay", PasswordHash: mustHash(t, "secret-a"), Domain: "example.com"},
			{Username: "bob-relay", PasswordHash: mustHash(t, "secret-b"), Domain: "example.org",
				AllowedSenders: []string{"noreply@example.org"}},
		},
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDirectoryLookups(t *testing.T) {
	snap := testSnapshot(t)
	dir, err := Build(snap)
	if err != nil {
		t.Fatal(err)
	}
	if dir.Hash() == "" || dir.Hash() != snap.Hash {
		t.Errorf("Hash() = %q, want the snapshot hash %q", dir.Hash(), snap.Hash)
	}
	kinds := map[string]struct {
		addr   string
		kind   Kind
		domain string
	}{
		"a registered user is a user":        {"alice@example.com", KindUser, "example.com"},
		"a functional account is functional": {"billing@example.com", KindFunctional, "example.com"},
		"an alias is an alias":               {"al@example.com", KindAlias, "example.com"},
		"an invalid address is invalid":      {"gone@example.com", KindInvalid, "example.com"},
		"an unlisted address of a managed domain is known as unknown in its domain": {"nobody@example.com", KindUnknown, "example.com"},
		"an address of a foreign domain has no domain":                              {"x@foreign.example", KindUnknown, ""},
	}
	for name, tc := range kinds {
		t.Run(name, func(t *testing.T) {
			e := dir.Lookup(tc.addr)
			got := ""
			if e.Domain != nil {
				got = e.Domain.Name
			}
			if e.Kind != tc.kind || got != tc.domain {
				t.Errorf("Lookup(%q) = %v in %q, want %v in %q", tc.addr, e.Kind, got, tc.kind, tc.domain)
			}
		})
	}
	if e := dir.Lookup("al@example.com"); e.Target != "alice@example.com" {
		t.Errorf("alias target = %q", e.Target)
	}

	alice, bob := dir.Credential("alice-relay"), dir.Credential("bob-relay")
	if alice == nil || bob == nil || dir.Credential("Alice-Relay") != nil {
		t.Fatal("credentials must be found by their exact username only")
	}
	if !alice.Hash.Verify("secret-a") || alice.Hash.Verify("secret-b") {
		t.Error("alice's password hash does not verify as it should")
	}
	senders := map[string]struct {
		cred *Credential
		addr string
		want bool
	}{
		"a credential without allowed senders may send as a user of its domain": {alice, "alice@example.com", true},
		"... as a functional account of its domain":                             {alice, "billing@example.com", true},
		"... as an alias of its domain":                                         {alice, "al@example.com", true},
		"... but not as an invalid address":                                     {alice, "gone@example.com", false},
		"... nor as an unlisted address of its domain":                          {alice, "nobody@example.com", false},
		"... nor as a user of another managed domain":                           {alice, "bob@example.org", false},
		"a credential with allowed senders may send as one of them":             {bob, "noreply@example.org", true},
		"... but not as another user of its domain":                             {bob, "bob@example.org", false},
	}
	for name, tc := range senders {
		t.Run(name, func(t *testing.T) {
			if got := dir.MaySend(tc.cred, tc.addr); got != tc.want {
				t.Errorf("MaySend(%s, %q) = %v, want %v", tc.cred.Username, tc.addr, got, tc.want)
			}
		})
	}

	servers := map[string]struct {
		ip   string
		want []string
	}{
		"an IP in one domain's range maps to that domain":      {"192.0.2.10", []string{"example.com"}},
		"an IP in two overlapping ranges maps to both, sorted": {"192.0.2.200", []string{"example.com", "example.org"}},
		"a host route matches only its address":                {"198.51.100.7", []string{"example.org"}},
		"the neighbour of a host route matches nothing":        {"198.51.100.8", nil},
		"an IPv4-mapped IPv6 address is looked up as IPv4":     {"::ffff:192.0.2.10", []string{"example.com"}},
		"an IPv6 address in range matches":                     {"2001:db8:1::1", []string{"example.com"}},
		"an IPv6 address outside every range matches nothing":  {"2001:db9::1", nil},
	}
	for name, tc := range servers {
		t.Run(name, func(t *testing.T) {
			got := dir.SendingServerDomains(netip.MustParseAddr(tc.ip))
			if !slices.Equal(got, tc.want) {
				t.Errorf("SendingServerDomains(%s) = %v, want %v", tc.ip, got, tc.want)
			}
		})
	}
}

func TestDiscoveredAddresses(t *testing.T) {
	s := testSnapshot(t)
	s.Domains[0].Discovered = []snapshot.DiscoveredAddress{
		{Address: "alice@example.com", State: snapshot.DiscoveredInvalid},
		{Address: "gone@example.com", State: snapshot.DiscoveredUser},
		{Address: "new@example.com", State: snapshot.DiscoveredUser, Role: "SilentUser"},
		{Address: "first.last@example.com", State: snapshot.DiscoveredAlias, Target: "alice@example.com"},
		{Address: "expired@example.com", State: snapshot.DiscoveredInvalid},
		{Address: "seen@example.com", State: snapshot.DiscoveredPending},
	}
	dir, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	alice := dir.Credential("alice-relay")
	cases := map[string]struct {
		addr       string
		kind       Kind
		discovered bool
		maySend    bool
	}{
		"a configured user stays a user whatever Discovery says":   {"alice@example.com", KindUser, false, true},
		"a configured invalid address stays invalid":               {"gone@example.com", KindInvalid, false, false},
		"a discovered user is a user and may send":                 {"new@example.com", KindUser, true, true},
		"a discovered alias is an alias":                           {"first.last@example.com", KindAlias, true, true},
		"an expired discovered address is invalid":                 {"expired@example.com", KindInvalid, true, false},
		"a pending address is accepted as recipient but no sender": {"seen@example.com", KindPending, true, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := dir.Lookup(tc.addr)
			if e.Kind != tc.kind || e.Discovered != tc.discovered {
				t.Errorf("Lookup(%q) = %v discovered=%v, want %v discovered=%v", tc.addr, e.Kind, e.Discovered, tc.kind, tc.discovered)
			}
			if got := dir.MaySend(alice, tc.addr); got != tc.maySend {
				t.Errorf("MaySend(alice-relay, %q) = %v, want %v", tc.addr, got, tc.maySend)
			}
		})
	}
	if e := dir.Lookup("first.last@example.com"); e.Target != "alice@example.com" {
		t.Errorf("discovered alias target = %q", e.Target)
	}
}

func TestBuildRefusesWhatALookupTableCannotHold(t *testing.T) {
	cases := map[string]func(s *snapshot.Snapshot){
		"an address listed as a user and as invalid is refused": func(s *snapshot.Snapshot) {
			s.Domains[0].InvalidAddresses = append(s.Domains[0].InvalidAddresses, "alice@example.com")
		},
		"a credential whose domain is missing is refused": func(s *snapshot.Snapshot) {
			s.Credentials[0].Domain = "missing.example"
		},
		"a bad password hash is refused": func(s *snapshot.Snapshot) {
			s.Credentials[0].PasswordHash = "plain$text"
		},
		"a bad sending-server prefix is refused": func(s *snapshot.Snapshot) {
			s.Domains[0].SendingServers = []string{"192.0.2.0/33"}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			s := testSnapshot(t)
			mutate(s)
			if _, err := Build(s); err == nil {
				t.Fatal("Build succeeded, want an error")
			}
		})
	}
}

func TestEmptyRefusesEverything(t *testing.T) {
	dir := Empty()
	if dir.Credential("x") != nil || dir.Lookup("a@example.com").Domain != nil ||
		len(dir.SendingServerDomains(netip.MustParseAddr("192.0.2.1"))) != 0 {
		t.Fatal("an empty directory must know nothing")
	}
}

// largeSnapshot has nDomains domains with 4 users each, and nCreds credentials spread
// over them; hashes are computed once and shared, as hashing is not what is measured.
func largeSnapshot(tb testing.TB, nDomains, nCreds int) *snapshot.Snapshot {
	hash := mustHash(tb, "password")
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion}
	for i := range nDomains {
		name := fmt.Sprintf("d%05d.example", i)
		d := snapshot.Domain{Name: name, SendingServers: []string{fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}}
		for u := range 4 {
			d.Users = append(d.Users, snapshot.User{Address: fmt.Sprintf("u%d@%s", u, name)})
		}
		s.Domains = append(s.Domains, d)
	}
	for i := range nCreds {
		s.Credentials = append(s.Credentials, snapshot.Credential{
			Username: fmt.Sprintf("cred-%06d", i), PasswordHash: hash,
			Domain: s.Domains[i%nDomains].Name,
		})
	}
	return s
}

func TestBuildLargeSnapshot(t *testing.T) {
	s := largeSnapshot(t, 5000, 100_000)
	start := time.Now()
	dir, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built 5k domains and 100k credentials in %v", time.Since(start))
	domains, addrs, creds := dir.Counts()
	if domains != 5000 || addrs != 20000 || creds != 100_000 {
		t.Fatalf("counts = %d domains, %d addresses, %d credentials", domains, addrs, creds)
	}
	if got := dir.SendingServerDomains(netip.MustParseAddr("10.19.135.9")); !slices.Equal(got, []string{"d04999.example"}) {
		t.Fatalf("sending server lookup = %v", got)
	}
	if c := dir.Credential("cred-099999"); c == nil || !strings.HasPrefix(c.Domain.Name, "d") {
		t.Fatal("last credential missing")
	}
}

func BenchmarkBuild(b *testing.B) {
	s := largeSnapshot(b, 5000, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendingServerLookup(b *testing.B) {
	dir, err := Build(largeSnapshot(b, 5000, 10))
	if err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("10.19.135.9")
	for b.Loop() {
		if len(dir.SendingServerDomains(ip)) != 1 {
			b.Fatal("miss")
		}
	}
}
