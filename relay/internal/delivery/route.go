package delivery

import (
	"strings"
	"sync"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Directions, as in the spool's envelopes.
const (
	DirectionOutbound = "outbound"
	DirectionInbound  = "inbound"
)

// route says where mail from sender to domain goes: a managed domain's own server
// under its Inbound policy, or else the sender's domain's outbound route, the
// smarthost or the domain's MX hosts, under the sender's domain's Outbound policy. A
// notification has the null sender; it goes out under the Outbound policy and route of
// the managed domain it speaks for (onBehalfOf), as the mail it reports on would have.
// A hop that logs in carries its credentials from the view.
func route(v *compiled.View, sender, onBehalfOf, domain string, smarthost *Target) (Route, string) {
	if d := v.Domain(domain); d != nil && d.InboundDelivery != nil {
		r := Route{Domain: domain, Policy: v.InboundTLS(domain)}
		r.hop(v, d.InboundDelivery)
		return r, DirectionInbound
	}
	from := domainOf(sender)
	if sender == "" {
		from = onBehalfOf
	}
	r := Route{Domain: domain, Policy: v.TLSPolicy(snapshot.DirectionOutbound, from, domain)}
	if d := v.Domain(from); d != nil && d.OutboundRoute != nil {
		r.hop(v, d.OutboundRoute) // the tenant's own smarthost wins over the relay's
		return r, DirectionOutbound
	}
	if smarthost != nil {
		t := *smarthost
		t.AdminNamed = true // from the relay's --smarthost, never from a tenant
		r.Hosts = []Target{t}
	}
	return r, DirectionOutbound
}

// hop sends r to a server a MailDomain names, with the credentials it logs in with.
// Tenant-named, so the non-public address guard applies.
func (r *Route) hop(v *compiled.View, e *snapshot.Endpoint) {
	r.Hosts = []Target{{Host: e.Host, Port: e.Port}}
	if e.AuthSecret != "" {
		r.AuthSecret = e.AuthSecret
		if c, ok := v.RouteCredentials(e.AuthSecret); ok {
			r.Auth = &c
		}
	}
}

func hostNames(ts []Target) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Host
	}
	return strings.Join(names, ", ")
}

// isManaged reports whether domain is a managed domain of v.
func isManaged(v *compiled.View, domain string) bool { return v.Domain(domain) != nil }

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
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
