package delivery

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

// world is a small internet on loopback: a DNS server and SMTP servers whose names
// resolve to 127.0.0.1, each on its own port.
type world struct {
	t        testing.TB
	dns      *testkit.DNS
	resolver *mx.Resolver
	ports    map[string]int
}

func newWorld(t testing.TB) *world {
	t.Helper()
	d := testkit.StartDNS(t)
	r, err := mx.New([]string{d.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, dns: d, resolver: r, ports: map[string]int{}}
}

// mx starts an SMTP server named host, listed as an MX of domain with preference pref.
func (w *world) mx(domain, host string, pref int, opts ...testkit.Option) *testkit.Server {
	w.t.Helper()
	s := testkit.Start(w.t, append([]testkit.Option{testkit.WithDomain(host)}, opts...)...)
	w.dns.Add(w.t, fmt.Sprintf("%s. MX %d %s.", domain, pref, host), host+". A 127.0.0.1")
	w.ports[host] = s.Port
	return s
}

// loopback is the network of the world's servers, which the tests allow explicitly:
// the relay refuses non-public addresses unless an admin allows them.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func (w *world) client(opts ...func(*ClientOptions)) *Client {
	w.t.Helper()
	o := ClientOptions{HELOName: "relay.test", Resolver: w.resolver, PortOverrides: w.ports, AllowedNetworks: loopback,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = c.Close() })
	return c
}

func message(subject string) string {
	return "From: <a@a.example>\r\nTo: <b@dest.example>\r\nSubject: " + subject + "\r\n\r\nHello.\r\n.leading dot\r\n"
}

func deliver(t *testing.T, c *Client, domain string, policy tlspolicy.Policy, rcpts ...string) Result {
	t.Helper()
	body := message("test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Deliver(ctx, Request{
		Route:  Route{Domain: domain, Policy: policy},
		Sender: "a@a.example", Recipients: rcpts,
		Body: bytes.NewReader([]byte(body)), Size: int64(len(body)),
	})
}

func outcomes(r Result) string {
	var s []string
	for _, x := range r.Recipients {
		s = append(s, x.Address+"="+x.Outcome.String())
	}
	return strings.Join(s, ",")
}
