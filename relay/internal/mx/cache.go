package mx

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultNegativeTTL is how long a "no such name" or "no such record" answer is kept
// when the answer carries no SOA to say (RFC 2308).
const DefaultNegativeTTL = time.Minute

// cache keeps answers for their TTL, capped; failures (SERVFAIL, timeouts) are never
// kept, so a broken resolver is asked again at the next delivery.
type cache struct {
	max    int
	maxTTL time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	resp    *dns.Msg // shared and never modified
	expires time.Time
}

// EnableCache makes r keep up to entries answers, each for its TTL but at most maxTTL.
// Call it before r is used.
func (r *Resolver) EnableCache(entries int, maxTTL time.Duration) {
	r.cache = &cache{max: entries, maxTTL: maxTTL, now: time.Now, entries: map[cacheKey]cacheEntry{}}
}

func (c *cache) get(name string, qtype uint16) *dns.Msg {
	if c == nil {
		return nil
	}
	k := cacheKey{strings.ToLower(name), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, k)
		return nil
	}
	return e.resp
}

func (c *cache) put(name string, qtype uint16, resp *dns.Msg) {
	if c == nil || c.max <= 0 {
		return
	}
	ttl := c.ttl(resp)
	if ttl <= 0 {
		return
	}
	k := cacheKey{strings.ToLower(name), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for old := range c.entries { // evict an arbitrary entry; good enough at this size
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = cacheEntry{resp: resp, expires: c.now().Add(ttl)}
}

// ttl is the smallest TTL of the answer, or for a negative answer the SOA minimum.
func (c *cache) ttl(resp *dns.Msg) time.Duration {
	var ttl uint32
	found := false
	for _, rr := range resp.Answer {
		if t := rr.Header().Ttl; !found || t < ttl {
			ttl, found = t, true
		}
	}
	d := time.Duration(ttl) * time.Second
	if !found {
		d = DefaultNegativeTTL
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				d = time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
			}
		}
	}
	return min(d, c.maxTTL)
}
