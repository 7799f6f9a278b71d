package discovery

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: epoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder keeps observations in memory.
type recorder struct {
	mu  sync.Mutex
	got []discoverystate.Observation
}

func (r *recorder) Record(kind discoverystate.Kind, address string, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, discoverystate.Observation{Kind: kind, Address: address, Time: at})
	return nil
}

func (r *recorder) observations() []discoverystate.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]discoverystate.Observation(nil), r.got...)
}

// domainFor is a managed domain under a discovery policy, delivered to srv.
func domainFor(name string, srv *testkit.Server) *directory.Domain {
	return &directory.Domain{
		Name:            name,
		DiscoveryPolicy: "mail/discovery",
		InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: srv.Port},
	}
}

// gate holds every dial until opened, and counts the dials waiting.
type gate struct {
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (g *gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newVerifier(t *testing.T, opts Options) *Verifier {
	t.Helper()
	opts.Prober.HELOName = "relay.test"
	// The test servers listen on loopback, which callouts refuse unless it is allowed.
	opts.Prober.AllowedNetworks = loopback
	if opts.CatchAllTTL == 0 {
		// These tests count the callouts an accept-all test server sees; catch-all
		// checks, which add one per domain, have tests of their own.
		opts.CatchAllTTL = -1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := New(opts)
	t.Cleanup(v.Close)
	return v
}
