package outbound

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNonPublic(t *testing.T) {
	public := map[string]string{
		"a public IPv4 address is public":                        "8.8.8.8",
		"an address just below 10/8 is public":                   "9.255.255.255",
		"an address just above 172.16/12 is public":              "172.32.0.1",
		"an address just above the benchmarking range is public": "198.20.0.1",
		"a public IPv6 address is public":                        "2001:4860:4860::8888",
		"an IPv4-mapped public address is public":                "::ffff:8.8.8.8",
		"NAT64 of a public address is public":                    "64:ff9b::808:808",
		"6to4 of a public address is public":                     "2002:808:808::1",
	}
	for name, a := range public {
		t.Run(name, func(t *testing.T) {
			if why := NonPublic(netip.MustParseAddr(a)); why != "" {
				t.Fatalf("%s is %q, want public", a, why)
			}
		})
	}
	refused := map[string]struct{ addr, why string }{
		"unspecified IPv4 is refused":              {"0.0.0.0", "this network"},
		"RFC 1918 10/8 is refused":                 {"10.1.2.3", "private"},
		"RFC 1918 172.16/12 is refused":            {"172.31.255.255", "private"},
		"RFC 1918 192.168/16 is refused":           {"192.168.1.1", "private"},
		"CGNAT 100.64/10 is refused":               {"100.127.0.1", "CGNAT"},
		"loopback is refused":                      {"127.0.0.1", "loopback"},
		"all of 127/8 is refused":                  {"127.1.2.3", "loopback"},
		"link-local is refused":                    {"169.254.169.254", "link-local"},
		"IETF protocol assignments are refused":    {"192.0.0.8", "IETF"},
		"TEST-NET-1 is refused":                    {"192.0.2.1", "documentation"},
		"TEST-NET-2 is refused":                    {"198.51.100.1", "documentation"},
		"TEST-NET-3 is refused":                    {"203.0.113.1", "documentation"},
		"the benchmarking range is refused":        {"198.19.0.25", "benchmarking"},
		"multicast is refused":                     {"224.0.0.1", "multicast"},
		"the limited broadcast is refused":         {"255.255.255.255", "broadcast"},
		"reserved 240/4 is refused":                {"240.0.0.1", "reserved"},
		"unspecified IPv6 is refused":              {"::", "unspecified"},
		"IPv6 loopback is refused":                 {"::1", "loopback"},
		"IPv4-mapped loopback is refused":          {"::ffff:127.0.0.1", "loopback"},
		"IPv4-mapped private is refused":           {"::ffff:10.0.0.1", "private"},
		"IPv4-compatible is refused":               {"::127.0.0.1", "IPv4-compatible"},
		"NAT64 of loopback is refused":             {"64:ff9b::7f00:1", "NAT64 of loopback"},
		"6to4 of a private address is refused":     {"2002:c0a8:101::1", "6to4 of private"},
		"ULA fc00::/7 is refused":                  {"fd12:3456::1", "unique local"},
		"IPv6 link-local is refused":               {"fe80::1", "link-local"},
		"IPv6 link-local with a zone is refused":   {"fe80::1%eth0", "link-local"},
		"IPv6 multicast is refused":                {"ff02::1", "multicast"},
		"IPv6 documentation is refused":            {"2001:db8::25", "documentation"},
		"Teredo and other assignments are refused": {"2001::1", "IETF"},
		"discard-only is refused":                  {"100::1", "discard"},
		"an address outside 2000::/3 is refused":   {"4000::1", "not global unicast"},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			why := NonPublic(netip.MustParseAddr(tc.addr))
			if !strings.Contains(why, tc.why) {
				t.Fatalf("%s is %q, want a refusal mentioning %q", tc.addr, why, tc.why)
			}
		})
	}
}

func TestGuard(t *testing.T) {
	p := netip.MustParsePrefix
	tests := map[string]struct {
		allowed, denied []netip.Prefix
		addr            string
		refused         bool
	}{
		"loopback is refused by default":                      {addr: "127.0.0.1", refused: true},
		"an allowed network is dialed although not public":    {allowed: []netip.Prefix{p("127.0.0.0/8")}, addr: "127.0.0.1"},
		"an allowed network covers only itself":               {allowed: []netip.Prefix{p("127.0.0.1/32")}, addr: "127.0.0.2", refused: true},
		"an allowed IPv4 network covers its IPv4-mapped form": {allowed: []netip.Prefix{p("127.0.0.0/8")}, addr: "::ffff:127.0.0.1"},
		"an allowed IPv4-mapped network covers IPv4":          {allowed: []netip.Prefix{p("::ffff:127.0.0.0/104")}, addr: "127.0.0.1"},
		"a denied network is refused though public":           {denied: []netip.Prefix{p("8.8.8.0/24")}, addr: "8.8.8.8", refused: true},
		"an allowed network wins over a denied one":           {allowed: []netip.Prefix{p("10.1.0.0/16")}, denied: []netip.Prefix{p("10.0.0.0/8")}, addr: "10.1.2.3"},
		"a public address needs no allowance":                 {addr: "2a00:1450:4001::1a"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			why := newGuard(tc.allowed, tc.denied).refuse(netip.MustParseAddr(tc.addr))
			if (why != "") != tc.refused {
				t.Fatalf("refuse(%s) = %q, want refused %v", tc.addr, why, tc.refused)
			}
		})
	}
}

// The default dialer checks the guard once more on the address the socket connects to,
// so nothing between the check and the connect can swap the address.
func TestDialChecksTheSocketAddress(t *testing.T) {
	srv := (&scripted{t: t}).start()
	d := New(Options{})
	ep := Endpoint{Host: "mx.example", Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(srv.port))}
	_, err := d.dial(context.Background(), ep)
	if !errors.Is(err, ErrNotPublic) {
		t.Fatalf("dial = %v, want a refusal", err)
	}
	ep.AdminNamed = true
	c, err := d.dial(context.Background(), ep)
	if err != nil {
		t.Fatalf("dial of an admin-named endpoint: %v", err)
	}
	_ = c.Close()
}

func TestRefusalSaysHowToAllow(t *testing.T) {
	d := New(Options{})
	ep := Endpoint{Host: "mx.example", Addr: netip.MustParseAddrPort("10.0.0.1:25")}
	_, err := d.Open(context.Background(), ep, Params{})
	var oe *Error
	if !errors.As(err, &oe) || !errors.Is(err, ErrNotPublic) || oe.Status != RefusedStatus {
		t.Fatalf("Open = %v, want an *Error with %s wrapping ErrNotPublic", err, RefusedStatus)
	}
	for _, want := range []string{"mx.example", "10.0.0.1", "not a public address", "private", AllowFlag} {
		if !strings.Contains(oe.Reason, want) {
			t.Errorf("reason %q lacks %q", oe.Reason, want)
		}
	}
}
