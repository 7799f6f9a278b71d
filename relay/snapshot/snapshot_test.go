package snapshot

import (
	"bytes"
	"strings"
	"testing"
)

func sample(t *testing.T) *Snapshot {
	t.Helper()
	hash, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	return &Snapshot{
		APIVersion: APIVersion,
		Domains: []Domain{
			{Name: "example.org", Source: ObjectRef{"b", "org"}},
			{
				Name: "example.com", Source: ObjectRef{"a", "com"},
				Users:           []User{{Address: "zed@example.com"}, {Address: "amy@example.com", Role: "EndUser"}},
				Aliases:         []Alias{{Address: "a@example.com", Target: "amy@example.com"}},
				SendingServers:  []string{"203.0.113.0/28", "2001:db8::/64"},
				InboundDelivery: &Endpoint{Host: "mail.example.com", Port: 25},
				DiscoveryPolicy: "a/discovery",
			},
		},
		Credentials:       []Credential{{Username: "app", PasswordHash: hash, Domain: "example.com", Source: ObjectRef{"a", "app"}}},
		DiscoveryPolicies: []DiscoveryPolicy{{Name: "a/discovery", Threshold: 3, WindowDays: 30, ExpiryDays: 21}},
		TLSPolicies: []TLSPolicy{{
			Source: ObjectRef{"a", "tls"}, Direction: DirectionOutbound, Domains: []string{"example.com"},
			Destinations: []string{"*.bank.example", "bank.example"}, Mode: ModeRequireVerifiedTLS, MinVersion: "1.2",
		}},
		Certificates: []Certificate{{SecretName: "relay-tls"}},
	}
}

func TestEqualContentEncodesToEqualBytes(t *testing.T) {
	a, b := sample(t), sample(t)
	b.Credentials[0].PasswordHash = a.Credentials[0].PasswordHash
	// Reverse every list b has, so only the order differs.
	b.Domains[0], b.Domains[1] = b.Domains[1], b.Domains[0]
	d := &b.Domains[0]
	if d.Name != "example.com" {
		d = &b.Domains[1]
	}
	d.Users[0], d.Users[1] = d.Users[1], d.Users[0]
	d.SendingServers[0], d.SendingServers[1] = d.SendingServers[1], d.SendingServers[0]

	ea, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ea, eb) || a.Hash != b.Hash || a.Hash == "" {
		t.Fatalf("same content, different encodings:\n%s\n%s", ea, eb)
	}
}

func TestRoundTripThroughShards(t *testing.T) {
	s := sample(t)
	for name, maxBytes := range map[string]int{"one shard": 0, "many small shards": 64} {
		t.Run(name, func(t *testing.T) {
			shards, err := Encode(s, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if maxBytes > 0 && len(shards) < 2 {
				t.Fatalf("want several shards, got %d", len(shards))
			}
			// Any order works.
			reversed := make([]Shard, len(shards))
			for i, sh := range shards {
				rebuilt, err := ShardFromAnnotations(sh.Annotations(), sh.Data)
				if err != nil {
					t.Fatal(err)
				}
				reversed[len(shards)-1-i] = rebuilt
			}
			got, err := Assemble(reversed)
			if err != nil {
				t.Fatal(err)
			}
			if got.Hash != s.Hash || len(got.Domains) != 2 || got.Credentials[0].Username != "app" {
				t.Fatalf("assembled snapshot differs: %+v", got)
			}
		})
	}
}

func TestBrokenShardSetsAreRefused(t *testing.T) {
	s := sample(t)
	shards, err := Encode(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	other := sample(t)
	other.Domains = other.Domains[1:]
	other.DiscoveryPolicies = nil
	other.Domains[0].DiscoveryPolicy = ""
	otherShards, err := Encode(other, 64)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]Shard(nil), shards...)
	tampered[0].Data = append([]byte(nil), tampered[0].Data...)
	tampered[0].Data[len(tampered[0].Data)-1] ^= 0xff

	cases := map[string]struct {
		shards []Shard
		want   string
	}{
		"a missing shard is refused":              {shards[1:], "shard 0 of"},
		"shards of two snapshots are not mixed":   {append([]Shard{otherShards[0]}, shards[1:]...), "do not belong together"},
		"corrupted bytes are detected":            {tampered, "snapshot"},
		"no shards at all is an error, not empty": {nil, "no snapshot shards"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Assemble(tc.shards)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestUnmarshalChecksHashVersionAndContent(t *testing.T) {
	good, err := sample(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		doc  string
		want string
	}{
		"an edited document no longer matches its hash": {
			strings.Replace(string(good), "mail.example.com", "evil.example.net", 1), "hash mismatch"},
		"another format version is refused": {
			`{"apiVersion":"relay.postwarden.dev/snapshot/v9"}`, "not supported"},
		"unknown fields are refused, not ignored": {
			`{"apiVersion":"` + APIVersion + `","domainz":[]}`, "unknown field"},
		"an open-relay sized CIDR typo is caught": {
			`{"apiVersion":"` + APIVersion + `","domains":[{"name":"example.com","source":{},"sendingServers":["203.0.113.0/33"]}]}`, "sending server"},
		"a credential without a hash is refused": {
			`{"apiVersion":"` + APIVersion + `","domains":[{"name":"example.com","source":{}}],"credentials":[{"username":"u","passwordHash":"plain","domain":"example.com","source":{}}]}`, "password hash"},
		"a user outside its domain is refused": {
			`{"apiVersion":"` + APIVersion + `","domains":[{"name":"example.com","source":{},"users":[{"address":"a@example.org"}]}]}`, "not an address in the domain"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Unmarshal([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	s, err := Unmarshal(good)
	if err != nil {
		t.Fatalf("the encoding of a valid snapshot must load back: %v", err)
	}
	handWritten, err := Unmarshal([]byte(`{"apiVersion":"` + APIVersion + `","domains":[{"name":"example.com","source":{}}]}`))
	if err != nil || handWritten.Hash == "" || s.Hash == "" {
		t.Fatalf("a document without a hash gets one computed: %v", err)
	}
}

func TestPasswordHash(t *testing.T) {
	h1, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("s3cret")
	if h1 == h2 {
		t.Error("two hashes of one password share a salt")
	}
	if strings.Contains(h1, "s3cret") {
		t.Error("the hash contains the password")
	}
	parsed, err := ParsePasswordHash(h1)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]struct {
		password string
		want     bool
	}{
		"the right password verifies":       {"s3cret", true},
		"a wrong password does not":         {"s3cret!", false},
		"a prefix of the password does not": {"s3cre", false},
		"the empty password does not":       {"", false},
	}
	for name, c := range checks {
		if got := parsed.Verify(c.password); got != c.want {
			t.Errorf("%s: got %v", name, got)
		}
	}
	if (PasswordHash{}).Verify("") {
		t.Error("the zero hash verifies a password")
	}
}

func TestAddressAndDomainSyntax(t *testing.T) {
	cases := map[string]struct {
		addr string
		want bool
	}{
		"a plain address is valid":                            {"jane.doe@example.com", true},
		"plus addressing is valid":                            {"jane+news@example.com", true},
		"the percent hack is not":                             {"jane%evil.example@example.com", false},
		"a source route is not":                               {"@relay.example:jane@example.com", false},
		"two at signs are not":                                {"jane@evil.example@example.com", false},
		"a quoted local part is not":                          {`"jane"@example.com`, false},
		"upper case is not (addresses are stored lower case)": {"Jane@example.com", false},
		"a trailing dot on the domain is not":                 {"jane@example.com.", false},
		"a leading dot in the local part is not":              {".jane@example.com", false},
		"consecutive dots are not":                            {"ja..ne@example.com", false},
		"a single-label domain is not":                        {"jane@localhost", false},
	}
	for name, c := range cases {
		if got := IsAddress(c.addr); got != c.want {
			t.Errorf("%s: IsAddress(%q) = %v", name, c.addr, got)
		}
	}
}
