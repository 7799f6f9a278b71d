package delivery

import (
	"strings"
	"sync"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// Directions, as in the spool's envelopes.
const (
	DirectionOutbound = "outbound"
	DirectionInbound  = "inbound"
)

// routes is what routing needs from one snapshot, compiled once per snapshot.
type routes struct {
	snap    *snapshot.Snapshot
	managed map[string]*snapshot.Domain
	tls     *tlspolicy.Matcher
}

func compileRoutes(s *snapshot.Snapshot) (*routes, error) {
	rt := &routes{snap: s, managed: map[string]*snapshot.Domain{}}
	if s == nil {
		return rt, nil
	}
	for i := range s.Domains {
		rt.managed[s.Domains[i].Name] = &s.Domains[i]
	}
	m, err := tlspolicy.Compile(s.TLSPolicies)
	if err != nil {
		return nil, err
	}
	rt.tls = m
	return rt, nil
}

// route says where mail from sender to domain goes: a managed domain's own server
// under its Inbound policy, or else the smarthost or the domain's MX hosts under the
// sender's domain's Outbound policy. A notification has the null sender; it goes out
// under the Outbound policy of the managed domain it speaks for (onBehalfOf), as the
// mail it reports on would have.
func (rt *routes) route(sender, onBehalfOf, domain string, smarthost *Target) (Route, string) {
	if d := rt.managed[domain]; d != nil && d.InboundDelivery != nil {
		return Route{
			Domain: domain,
			Hosts:  []Target{{Host: d.InboundDelivery.Host, Port: d.InboundDelivery.Port}},
			Policy: rt.tls.Lookup(snapshot.DirectionInbound, domain, domain),
		}, DirectionInbound
	}
	from := domainOf(sender)
	if sender == "" {
		from = onBehalfOf
	}
	r := Route{Domain: domain, Policy: rt.tls.Lookup(snapshot.DirectionOutbound, from, domain)}
	if smarthost != nil {
		t := *smarthost
		t.AdminNamed = true // from the relay's --smarthost, never from a tenant
		r.Hosts = []Target{t}
	}
	return r, DirectionOutbound
}

func (rt *routes) isManaged(domain string) bool { return rt != nil && rt.managed[domain] != nil }

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// routeCache compiles routes once per snapshot pointer.
type routeCache struct {
	mu   sync.Mutex
	last *routes
}

func (c *routeCache) get(s *snapshot.Snapshot) (*routes, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && c.last.snap == s {
		return c.last, nil
	}
	rt, err := compileRoutes(s)
	if err != nil {
		return nil, err
	}
	c.last = rt
	return rt, nil
}

// semaphores bounds concurrency per key; entries vanish when unused, so thousands of
// destinations cost nothing at rest.
type semaphores struct {
	limit int
	mu    sync.Mutex
	m     map[string]*semEntry
}

type semEntry struct {
	ch   chan struct{}
	refs int
}

func newSemaphores(limit int) *semaphores {
	return &semaphores{limit: limit, m: map[string]*semEntry{}}
}

// acquire blocks until key has a free slot or done is closed; it returns the release
// function, or nil when done closed first.
func (s *semaphores) acquire(key string, done <-chan struct{}) func() {
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		e = &semEntry{ch: make(chan struct{}, s.limit)}
		s.m[key] = e
	}
	e.refs++
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(s.m, key)
		}
		s.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; drop() }
	case <-done:
		drop()
		return nil
	}
}
