package relay

import (
	"net"
	"net/netip"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/proxyproto"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Behind a balancer that sends the PROXY protocol, the sending-server allowlist sees the
// client's address, not the balancer's.
func TestProxyProtocolGivesTheClientAddressToTheAllowlist(t *testing.T) {
	a, _ := creds(t)
	s := newSnapshot(t, certEntry, a)
	s.Domains = append(s.Domains, snapshot.Domain{Name: "shop.example", Source: snapshot.ObjectRef{Namespace: "mail", Name: "shop"},
		Users: []snapshot.User{{Address: "orders@shop.example"}}, SendingServers: []string{"192.0.2.0/24"}})
	f := startFileRelay(t, s, func(c *Config) {
		c.Inbound.Proxy = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	waitFor(t, "readiness", f.Ready)

	relayFrom := func(client string) error {
		t.Helper()
		conn, err := net.Dial("tcp", f.InboundAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		h := proxyproto.Header{Source: netip.MustParseAddrPort(client), Destination: netip.MustParseAddrPort("203.0.113.1:25")}
		if _, err := conn.Write(h.AppendV2(nil)); err != nil {
			t.Fatal(err)
		}
		cl := smtp.NewClient(conn)
		defer cl.Close()
		if err := cl.Hello("shop-server.example"); err != nil {
			t.Fatal(err)
		}
		_, err = send(cl, "orders@shop.example", "customer@elsewhere.example", "your order")
		return err
	}
	if err := relayFrom("192.0.2.10:40000"); err != nil {
		t.Errorf("a sending server behind the balancer may not relay: %v", err)
	}
	if err := relayFrom("198.51.100.7:40000"); smtpCode(err) != 554 {
		t.Errorf("a stranger behind the balancer got %v, want 554 relay access denied", err)
	}
}
