package tlscert_test

import (
	"crypto/tls"
	"sync/atomic"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/test/testkit"
)

func parse(t *testing.T, p tlscert.Pair) *tls.Certificate {
	t.Helper()
	c, err := tlscert.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGetCertificate(t *testing.T) {
	ca := testkit.NewCA(t)
	mx := parse(t, tlscerttest.Issue(t, ca, "mx.example.com"))
	wild := parse(t, tlscerttest.Issue(t, ca, "*.example.net"))
	relay := parse(t, tlscerttest.Issue(t, ca, "relay.example.org", "smtp.example.org"))
	set, err := tlscert.NewSet([]*tls.Certificate{mx, wild, relay}, "smtp.example.org")
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		sni  string
		want *tls.Certificate
	}{
		"an exact name gets its certificate":                  {"mx.example.com", mx},
		"names are matched without regard to case":            {"MX.Example.COM", mx},
		"a name one label under a wildcard gets the wildcard": {"a.example.net", wild},
		"a wildcard covers one label only":                    {"a.b.example.net", relay},
		"a wildcard does not cover its parent":                {"example.net", relay},
		"no SNI gets the certificate covering the hostname":   {"", relay},
		"an unknown name gets the default certificate":        {"other.example", relay},
		"a second name of a certificate finds it":             {"relay.example.org", relay},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := set.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got certificate for %v, want %v", got.Leaf.DNSNames, tt.want.Leaf.DNSNames)
			}
		})
	}
}

func TestDefaultIsFirstWhenNoneCoversHostname(t *testing.T) {
	ca := testkit.NewCA(t)
	a := parse(t, tlscerttest.Issue(t, ca, "a.example.com"))
	b := parse(t, tlscerttest.Issue(t, ca, "b.example.com"))
	set, _ := tlscert.NewSet([]*tls.Certificate{a, b}, "relay.example.org")
	got, err := set.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || got != a {
		t.Fatalf("got %v, %v; want the first certificate", got, err)
	}
}

func TestNoSetAndAnEmptySetFailHandshakes(t *testing.T) {
	var none *tlscert.Set
	empty, _ := tlscert.NewSet(nil, "")
	for name, set := range map[string]*tlscert.Set{"no set": none, "an empty set": empty} {
		if n := set.Len(); n != 0 {
			t.Errorf("%s holds %d certificates", name, n)
		}
		if _, err := set.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
			t.Errorf("%s returned a certificate", name)
		}
		if !set.EarliestExpiry().IsZero() {
			t.Errorf("%s has an expiry", name)
		}
	}
}

func TestParseRefusesMismatchedKey(t *testing.T) {
	ca := testkit.NewCA(t)
	a := tlscerttest.Issue(t, ca, "a.example.com")
	b := tlscerttest.Issue(t, ca, "b.example.com")
	if _, err := tlscert.Parse(tlscert.Pair{Name: "mixed", CertPEM: a.CertPEM, KeyPEM: b.KeyPEM}); err == nil {
		t.Fatal("a certificate with another certificate's key parsed")
	}
	if _, err := tlscert.Parse(tlscert.Pair{Name: "garbage", CertPEM: []byte("x"), KeyPEM: []byte("y")}); err == nil {
		t.Fatal("garbage parsed")
	}
}

// A new set is seen by the next handshake over a real connection, with the same tls.Config.
func TestSwapReachesNextHandshake(t *testing.T) {
	ca := testkit.NewCA(t)
	var cur atomic.Pointer[tlscert.Set]
	cfg := tlscert.ServerConfig(cur.Load)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mx.example.com", RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	for range 2 {
		leaf := parse(t, tlscerttest.Issue(t, ca, "mx.example.com"))
		set, _ := tlscert.NewSet([]*tls.Certificate{leaf}, "")
		cur.Store(set)
		if got, want := serial(), leaf.Leaf.SerialNumber.String(); got != want {
			t.Fatalf("handshake served serial %s, want the new %s", got, want)
		}
	}
}

func TestOverlappingCertificatesPreferLaterExpiry(t *testing.T) {
	ca := testkit.NewCA(t)
	old := parse(t, tlscerttest.Issue(t, ca, "mx.example.com"))
	renewed := parse(t, tlscerttest.Issue(t, ca, "mx.example.com"))
	renewed.Leaf.NotAfter = old.Leaf.NotAfter.Add(1)
	for _, order := range [][]*tls.Certificate{{old, renewed}, {renewed, old}} {
		set, _ := tlscert.NewSet(order, "")
		got, _ := set.GetCertificate(&tls.ClientHelloInfo{ServerName: "mx.example.com"})
		if got != renewed {
			t.Fatal("the certificate that expires first was chosen")
		}
	}
}
