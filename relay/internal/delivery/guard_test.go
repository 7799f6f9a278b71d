package delivery

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestNonPublicAddressesAreRefused(t *testing.T) {
	tests := map[string]struct {
		allowed []netip.Prefix
		route   func(w *world, srv *testkit.Server) Route
		want    Outcome
	}{
		"an MX on loopback is refused without an allowed network": {
			route: func(*world, *testkit.Server) Route { return Route{Domain: "dest.example"} },
			want:  Deferred,
		},
		"a managed domain's own server on loopback is refused without an allowed network": {
			route: func(_ *world, srv *testkit.Server) Route {
				return Route{Domain: "dest.example", Hosts: []Target{{Host: "127.0.0.1", Port: srv.Port}}}
			},
			want: Deferred,
		},
		"an MX on loopback takes mail when its network is allowed": {
			allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			route:   func(*world, *testkit.Server) Route { return Route{Domain: "dest.example"} },
			want:    Delivered,
		},
		"the smarthost is named by an admin, so loopback takes mail": {
			route: func(_ *world, srv *testkit.Server) Route {
				return Route{Domain: "dest.example", Hosts: []Target{{Host: "127.0.0.1", Port: srv.Port, AdminNamed: true}}}
			},
			want: Delivered,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			srv := w.mx("dest.example", "mx.dest.example", 10)
			m, _ := NewMetrics(nil)
			c := w.client(func(o *ClientOptions) { o.AllowedNetworks, o.Metrics = tc.allowed, m })
			body := message("guard")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			route := tc.route(w, srv)
			route.Policy = tlspolicy.Default
			res := c.Deliver(ctx, Request{Route: route, Sender: "a@a.example", Recipients: []string{"b@dest.example"},
				Body: bytes.NewReader([]byte(body)), Size: int64(len(body))})
			r := res.Recipients[0]
			if r.Outcome != tc.want {
				t.Fatalf("got %s %s %q, want %s", r.Outcome, r.Status, r.Text(), tc.want)
			}
			if tc.want == Delivered {
				return
			}
			if r.Status != outbound.RefusedStatus || !strings.Contains(r.Reason, "127.0.0.1") ||
				!strings.Contains(r.Reason, "not a public address") || !strings.Contains(r.Reason, "--outbound-allowed-networks") {
				t.Fatalf("got %s %q; want %s saying the address is not public and naming the flag", r.Status, r.Reason, outbound.RefusedStatus)
			}
			if n := srv.Connections(); n != 0 {
				t.Fatalf("the server saw %d connections from a refused delivery", n)
			}
			if n := testutil.ToFloat64(m.Connections.WithLabelValues("failed")) + testutil.ToFloat64(m.Connections.WithLabelValues("opened")); n != 0 {
				t.Fatalf("a refused address counted %v connections", n)
			}
		})
	}
}

func TestConnectionMetricsCountThroughOutbound(t *testing.T) {
	w := newWorld(t)
	w.mx("dest.example", "mx.dest.example", 10, testkit.WithHandshakeFailure())
	w.dns.Add(t, "dest.example. MX 5 dead.dest.example.", "dead.dest.example. A 127.0.0.1")
	w.ports["dead.dest.example"] = 1 // nothing listens on port 1
	m, _ := NewMetrics(nil)
	c := w.client(func(o *ClientOptions) { o.Metrics = m })
	p := tlspolicy.Policy{Mode: tlspolicy.Opportunistic, Source: "mail/tls"}
	if r := deliver(t, c, "dest.example", p, "b@dest.example").Recipients[0]; r.Outcome != Delivered {
		t.Fatalf("got %s %q", r.Outcome, r.Text())
	}
	// The dead MX failed; the live one was opened twice: STARTTLS, then plaintext.
	for label, want := range map[string]float64{"failed": 1, "opened": 2} {
		if got := testutil.ToFloat64(m.Connections.WithLabelValues(label)); got != want {
			t.Errorf("connections %s = %v, want %v", label, got, want)
		}
	}
	if got := testutil.ToFloat64(m.TLSFallbacks.WithLabelValues("mail/tls")); got != 1 {
		t.Errorf("fallbacks of mail/tls = %v, want 1", got)
	}
}
