package mx

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postwarden/postwarden/test/testkit"
)

func newResolver(t *testing.T, d *testkit.DNS) *Resolver {
	t.Helper()
	r, err := New([]string{d.Addr}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func names(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func TestLookupMX(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Add(t,
		"pref.example. MX 20 backup.pref.example.",
		"pref.example. MX 10 Primary.Pref.Example.",
		"implicit.example. A 192.0.2.7",
		"nullmx.example. MX 0 .",
		"noaddr.example. TXT \"v=spf1 -all\"",
		"alias.example. CNAME real.example.",
		"real.example. MX 5 mx.real.example.",
	)
	d.Fail("servfail.example", dns.RcodeServerFailure)
	d.Drop("slow.example")

	tests := map[string]struct {
		domain    string
		want      []string
		status    string
		temporary bool
	}{
		"MX hosts come in preference order without the trailing dot": {domain: "pref.example", want: []string{"primary.pref.example", "backup.pref.example"}},
		"a domain without MX but with an address is its own MX":      {domain: "implicit.example", want: []string{"implicit.example"}},
		"a CNAME to a domain with MX is followed":                    {domain: "alias.example", want: []string{"mx.real.example"}},
		"a null MX is a permanent 5.1.10":                            {domain: "nullmx.example", status: "5.1.10"},
		"NXDOMAIN is a permanent 5.1.2":                              {domain: "missing.example", status: "5.1.2"},
		"no MX and no address is a permanent 5.1.2":                  {domain: "noaddr.example", status: "5.1.2"},
		"SERVFAIL is temporary":                                      {domain: "servfail.example", status: "4.4.3", temporary: true},
		"a timeout is temporary":                                     {domain: "slow.example", status: "4.4.3", temporary: true},
	}
	r := newResolver(t, d)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hosts, err := r.LookupMX(context.Background(), tc.domain)
			if tc.status == "" {
				if err != nil {
					t.Fatalf("LookupMX: %v", err)
				}
				if got := names(hosts); !slices.Equal(got, tc.want) {
					t.Fatalf("hosts = %v, want %v", got, tc.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("LookupMX error = %v, want an *Error", err)
			}
			if e.Status != tc.status || e.Temporary != tc.temporary {
				t.Fatalf("error %v: status %s temporary %v, want %s %v", e, e.Status, e.Temporary, tc.status, tc.temporary)
			}
		})
	}
}

func TestEqualPreferencesAreShuffled(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Add(t, "eq.example. MX 10 a.eq.example.", "eq.example. MX 10 b.eq.example.", "eq.example. MX 5 first.eq.example.")
	r := newResolver(t, d)
	seen := map[string]bool{}
	// Two equal hosts come out in one order or the other; 64 tries all alike has
	// probability 2^-63.
	for range 64 {
		hosts, err := r.LookupMX(context.Background(), "eq.example")
		if err != nil {
			t.Fatal(err)
		}
		if hosts[0].Name != "first.eq.example" {
			t.Fatalf("the best preference is not first: %v", names(hosts))
		}
		seen[hosts[1].Name] = true
	}
	if len(seen) != 2 {
		t.Fatalf("equal preferences never changed order: %v", seen)
	}
}

func TestLookupIP(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Add(t, "dual.example. AAAA 2001:db8::1", "dual.example. A 192.0.2.1")
	d.Fail("broken.example", dns.RcodeServerFailure)
	r := newResolver(t, d)
	tests := map[string]struct {
		host      string
		want      []string
		temporary bool
	}{
		"IPv4 comes before IPv6":              {host: "dual.example", want: []string{"192.0.2.1", "2001:db8::1"}},
		"an IP literal needs no lookup":       {host: "[192.0.2.9]", want: []string{"192.0.2.9"}},
		"a missing host fails permanently":    {host: "none.example"},
		"a failing server fails only for now": {host: "broken.example", temporary: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addrs, err := r.LookupIP(context.Background(), tc.host)
			if tc.want == nil {
				var e *Error
				if !errors.As(err, &e) || e.Temporary != tc.temporary {
					t.Fatalf("LookupIP error = %v, want temporary=%v", err, tc.temporary)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("addrs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFallsBackToTheNextServer(t *testing.T) {
	dead := testkit.StartDNS(t)
	dead.Fail("pref.example", dns.RcodeServerFailure)
	live := testkit.StartDNS(t)
	live.Add(t, "pref.example. MX 10 mx.pref.example.")
	r, err := New([]string{dead.Addr, live.Addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := r.LookupMX(context.Background(), "pref.example")
	if err != nil || len(hosts) != 1 {
		t.Fatalf("LookupMX = %v, %v; want the second server's answer", hosts, err)
	}
}
