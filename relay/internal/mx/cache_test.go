package mx

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postwarden/postwarden/test/testkit"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func cachedResolver(t *testing.T, d *testkit.DNS) (*Resolver, *testClock) {
	t.Helper()
	r := newResolver(t, d)
	r.EnableCache(100, 5*time.Minute)
	clock := &testClock{now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}
	r.cache.now = clock.Now
	return r, clock
}

func TestCacheKeepsAnswersForTheirTTL(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Add(t, "c.example. 60 MX 10 one.c.example.")
	r, clock := cachedResolver(t, d)
	lookup := func() []string {
		hosts, err := r.LookupMX(context.Background(), "c.example")
		if err != nil {
			t.Fatal(err)
		}
		return names(hosts)
	}
	lookup()
	d.Add(t, "c.example. 60 MX 5 zero.c.example.")
	if got := lookup(); !slices.Equal(got, []string{"one.c.example"}) {
		t.Fatalf("within the TTL: %v, want the cached answer", got)
	}
	clock.Advance(61 * time.Second)
	if got := lookup(); !slices.Equal(got, []string{"zero.c.example", "one.c.example"}) {
		t.Fatalf("after the TTL: %v, want the new answer", got)
	}
}

func TestCacheCapsLongTTLs(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Add(t, "c.example. 86400 A 192.0.2.1")
	r, clock := cachedResolver(t, d)
	if _, err := r.LookupIP(context.Background(), "c.example"); err != nil {
		t.Fatal(err)
	}
	d.Add(t, "c.example. 86400 A 192.0.2.2")
	clock.Advance(5*time.Minute + time.Second)
	addrs, err := r.LookupIP(context.Background(), "c.example")
	if err != nil || len(addrs) != 2 {
		t.Fatalf("after the cap: %v, %v; want both addresses", addrs, err)
	}
}

func TestCacheKeepsNXDOMAINBriefly(t *testing.T) {
	d := testkit.StartDNS(t)
	r, clock := cachedResolver(t, d)
	if _, err := r.LookupMX(context.Background(), "late.example"); err == nil {
		t.Fatal("a missing domain resolved")
	}
	d.Add(t, "late.example. MX 10 mx.late.example.")
	var e *Error
	if _, err := r.LookupMX(context.Background(), "late.example"); !errors.As(err, &e) || e.Status != "5.1.2" {
		t.Fatalf("within the negative TTL: %v, want the cached NXDOMAIN", err)
	}
	clock.Advance(DefaultNegativeTTL)
	if _, err := r.LookupMX(context.Background(), "late.example"); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
}

func TestCacheNeverKeepsFailures(t *testing.T) {
	d := testkit.StartDNS(t)
	d.Fail("flaky.example", dns.RcodeServerFailure)
	r, _ := cachedResolver(t, d)
	if _, err := r.LookupMX(context.Background(), "flaky.example"); err == nil {
		t.Fatal("SERVFAIL resolved")
	}
	if n := len(r.cache.entries); n != 0 {
		t.Fatalf("%d entries cached after a SERVFAIL", n)
	}
}
