package throttle

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
}

func fail(l *AuthLimiter, ip string, n int) (last time.Duration) {
	for range n {
		last = l.Failure(netip.MustParseAddr(ip))
	}
	return last
}

func TestAuthLimiterWindows(t *testing.T) {
	cases := map[string]struct {
		setup func(l *AuthLimiter, c *fakeClock)
		ip    string
		allow bool
		scope Scope
	}{
		"a fresh client may try": {
			setup: func(*AuthLimiter, *fakeClock) {}, ip: "192.0.2.1", allow: true,
		},
		"ten failures in a minute block the IP": {
			setup: func(l *AuthLimiter, _ *fakeClock) { fail(l, "192.0.2.1", 10) }, ip: "192.0.2.1", scope: ScopeIP,
		},
		"nine failures in a minute do not": {
			setup: func(l *AuthLimiter, _ *fakeClock) { fail(l, "192.0.2.1", 9) }, ip: "192.0.2.1", allow: true,
		},
		"the minute block ends with the minute": {
			setup: func(l *AuthLimiter, c *fakeClock) { fail(l, "192.0.2.1", 10); c.Advance(time.Minute) },
			ip:    "192.0.2.1", allow: true,
		},
		"fifty failures in a day block the IP for the day": {
			setup: func(l *AuthLimiter, c *fakeClock) {
				for range 5 {
					fail(l, "192.0.2.1", 10)
					c.Advance(time.Minute)
				}
			},
			ip: "192.0.2.1", scope: ScopeIP,
		},
		"the day block ends with the day": {
			setup: func(l *AuthLimiter, c *fakeClock) {
				for range 5 {
					fail(l, "192.0.2.1", 10)
					c.Advance(time.Minute)
				}
				c.Advance(24 * time.Hour)
			},
			ip: "192.0.2.1", allow: true,
		},
		"thirty failures spread over one /26 block a neighbour in it": {
			setup: func(l *AuthLimiter, _ *fakeClock) {
				fail(l, "192.0.2.1", 9)
				fail(l, "192.0.2.2", 9)
				fail(l, "192.0.2.3", 9)
				fail(l, "192.0.2.4", 3)
			},
			ip: "192.0.2.60", scope: ScopeNet,
		},
		"... but not a client of the next /26": {
			setup: func(l *AuthLimiter, _ *fakeClock) {
				fail(l, "192.0.2.1", 9)
				fail(l, "192.0.2.2", 9)
				fail(l, "192.0.2.3", 9)
				fail(l, "192.0.2.4", 3)
			},
			ip: "192.0.2.64", allow: true,
		},
		"ninety failures spread over one /21 block a neighbour in it": {
			setup: func(l *AuthLimiter, _ *fakeClock) {
				for i := range 10 {
					fail(l, netip.AddrFrom4([4]byte{192, 0, byte(i % 8), byte(64 * (i / 8))}).String(), 9)
				}
			},
			ip: "192.0.7.200", scope: ScopeWideNet,
		},
		"an IPv6 client is counted per /64": {
			setup: func(l *AuthLimiter, _ *fakeClock) { fail(l, "2001:db8::1", 5); fail(l, "2001:db8::2", 5) },
			ip:    "2001:db8::3", scope: ScopeIP,
		},
		"an IPv4-mapped IPv6 client is counted as its IPv4 address": {
			setup: func(l *AuthLimiter, _ *fakeClock) { fail(l, "::ffff:192.0.2.1", 10) },
			ip:    "192.0.2.1", scope: ScopeIP,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := newClock()
			l := NewAuthLimiter(DefaultAuthLimits(), c.Now)
			tc.setup(l, c)
			ok, scope := l.Allow(netip.MustParseAddr(tc.ip))
			if ok != tc.allow || scope != tc.scope {
				t.Errorf("Allow(%s) = %v, %q; want %v, %q", tc.ip, ok, scope, tc.allow, tc.scope)
			}
		})
	}
}

func TestAuthLimiterDelay(t *testing.T) {
	l := NewAuthLimiter(DefaultAuthLimits(), newClock().Now)
	var got []time.Duration
	for range 10 {
		got = append(got, l.Failure(netip.MustParseAddr("192.0.2.1")))
	}
	want := []time.Duration{0, 0, 0, 1 * time.Second, 2 * time.Second, 3 * time.Second,
		4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v (none for three failures, then 1 s more each, capped at 5 s)", got, want)
		}
	}
}

func TestConnLimiter(t *testing.T) {
	l := NewConnLimiter(ConnLimits{Total: 3, PerIP: 2}, nil)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	r1, ok, _ := l.Acquire(a)
	if !ok {
		t.Fatal("first connection refused")
	}
	if _, ok, _ := l.Acquire(a); !ok {
		t.Fatal("second connection from one IP refused under a limit of 2")
	}
	if _, ok, scope := l.Acquire(a); ok || scope != "per_ip" {
		t.Fatalf("third connection from one IP: ok=%v scope=%q, want refused per_ip", ok, scope)
	}
	if _, ok, _ := l.Acquire(b); !ok {
		t.Fatal("another IP refused under the total limit")
	}
	if _, ok, scope := l.Acquire(netip.MustParseAddr("192.0.2.3")); ok || scope != "total" {
		t.Fatalf("fourth connection: ok=%v scope=%q, want refused total", ok, scope)
	}
	r1()
	r1() // a second release must not free a second slot
	if total, forA := l.Count(a); total != 2 || forA != 1 {
		t.Fatalf("after release: total %d, for a %d; want 2 and 1", total, forA)
	}
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	l2 := NewConnLimiter(ConnLimits{PerIP: 1}, nil)
	if _, ok, _ := l2.Acquire(v6a); !ok {
		t.Fatal("first IPv6 connection refused")
	}
	if _, ok, _ := l2.Acquire(v6b); ok {
		t.Fatal("IPv6 clients of one /64 must share the per-IP limit")
	}
}

func TestConnLimiterRate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewConnLimiter(ConnLimits{PerIPPerMinute: 3}, func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for i := range 3 {
		release, ok, _ := l.Acquire(a)
		if !ok {
			t.Fatalf("connection %d of 3 in a minute refused", i+1)
		}
		release() // the rate counts connections made, not connections held
	}
	if _, ok, scope := l.Acquire(a); ok || scope != "rate" {
		t.Fatalf("fourth connection in a minute: ok=%v scope=%q, want refused rate", ok, scope)
	}
	if _, ok, _ := l.Acquire(b); !ok {
		t.Fatal("another client refused by the first one's rate")
	}
	if _, ok, _ := l.Acquire(netip.MustParseAddr("2001:db8::2")); !ok {
		t.Fatal("the same /64 has 2 more connections this minute")
	}
	now = now.Add(20 * time.Second) // a third of a minute refills one token
	if _, ok, _ := l.Acquire(a); !ok {
		t.Fatal("refused after a token was refilled")
	}
	if _, ok, _ := l.Acquire(a); ok {
		t.Fatal("accepted beyond the refilled token")
	}
	now = now.Add(2 * time.Minute)
	l.Acquire(netip.MustParseAddr("192.0.2.9")) // sweeps
	l.mu.Lock()
	n := len(l.rate)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d buckets after a quiet minute, want only the new client's", n)
	}
}

// Many addresses of one network (an IPv4 /24, an IPv6 /48) share one budget, so a few
// dozen of them cannot take every slot; other networks are not affected.
func TestConnLimiterPerNetwork(t *testing.T) {
	l := NewConnLimiter(ConnLimits{Total: 100, PerIP: 2, PerNetwork: 5}, nil)
	cases := []struct {
		network string
		first   netip.Addr
	}{
		{"an IPv4 /24", netip.MustParseAddr("203.0.113.1")},
		{"an IPv6 /48", netip.MustParseAddr("2001:db8:1:1::1")},
	}
	for _, tc := range cases {
		t.Run(tc.network, func(t *testing.T) {
			ip := tc.first
			for i := range 5 {
				if _, ok, scope := l.Acquire(ip); !ok {
					t.Fatalf("connection %d refused (%s)", i+1, scope)
				}
				if i%2 == 1 { // two per address, then the next address of the network
					if ip.Is4() {
						ip = ip.Next()
					} else {
						p, _ := ip.Prefix(64)
						next := p.Addr().As16()
						next[7]++ // the next /64 in the same /48
						ip = netip.AddrFrom16(next)
					}
				}
			}
			if _, ok, scope := l.Acquire(ip); ok || scope != "per_network" {
				t.Fatalf("the 6th connection of one network: ok=%v scope=%q, want per_network", ok, scope)
			}
		})
	}
	if _, ok, scope := l.Acquire(netip.MustParseAddr("198.51.100.1")); !ok {
		t.Fatalf("another network was refused (%s)", scope)
	}
}
