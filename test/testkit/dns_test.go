package testkit

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, addr, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	resp, _, err := c.Exchange(m, addr)
	return resp, err
}

func TestDNSAnswers(t *testing.T) {
	d := StartDNS(t)
	d.Add(t, "example.com. 300 IN MX 10 mx.example.com.", "mx.example.com. A 127.0.0.2",
		"alias.example.com. CNAME mx.example.com.")
	d.Fail("broken.example.com", dns.RcodeServerFailure)

	tests := map[string]struct {
		name      string
		qtype     uint16
		rcode     int
		nAnswers  int
		lastIsRRT uint16
	}{
		"a known name is answered from its records":    {"example.com", dns.TypeMX, dns.RcodeSuccess, 1, dns.TypeMX},
		"a name is looked up in any case":              {"MX.Example.COM", dns.TypeA, dns.RcodeSuccess, 1, dns.TypeA},
		"a CNAME is followed within the server's data": {"alias.example.com", dns.TypeA, dns.RcodeSuccess, 2, dns.TypeA},
		"a known name without the type has no answer":  {"example.com", dns.TypeAAAA, dns.RcodeSuccess, 0, 0},
		"an unknown name is NXDOMAIN":                  {"other.example", dns.TypeA, dns.RcodeNameError, 0, 0},
		"a failed name gets its rcode":                 {"broken.example.com", dns.TypeA, dns.RcodeServerFailure, 0, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := query(t, d.Addr, tc.name, tc.qtype)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.rcode || len(resp.Answer) != tc.nAnswers {
				t.Fatalf("rcode %s, %d answers; want %s, %d", dns.RcodeToString[resp.Rcode], len(resp.Answer),
					dns.RcodeToString[tc.rcode], tc.nAnswers)
			}
			if tc.nAnswers > 0 && resp.Answer[len(resp.Answer)-1].Header().Rrtype != tc.lastIsRRT {
				t.Fatalf("answers %v", resp.Answer)
			}
		})
	}
}

func TestDNSDropsAndCounts(t *testing.T) {
	d, err := NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Drop("silent.example")
	if _, err := query(t, d.Addr, "silent.example", dns.TypeA); err == nil {
		t.Fatal("a dropped name was answered")
	}
	if _, err := query(t, d.Addr, "other.example", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if n := d.Queries(); n != 2 {
		t.Fatalf("Queries() = %d, want 2", n)
	}
	if err := d.AddRecords("not a record"); err == nil {
		t.Fatal("a bad record was added")
	}
}
