package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/directory"
)

// DefaultCatchAllTTL is how long a domain's catch-all check holds. Checks run only after
// a callout was accepted, so a domain is probed at most daily per relay.
const DefaultCatchAllTTL = 24 * time.Hour

// ProbeLocalPrefix starts the local part of the random address a catch-all check asks
// about; the rest is random, so no real mailbox has it.
const ProbeLocalPrefix = "postwarden-probe-"

// catchAllCheck is one domain's catch-all check: in flight until done is closed, then
// its answer until expires.
type catchAllCheck struct {
	done     chan struct{}
	catchAll bool
	// known is false when the probe got no answer (a timeout or a 4xx): the check is
	// not kept, and the callout's answer is taken at its word.
	known   bool
	expires time.Time
}

// randomProbeAddress returns an address of domain that no one has.
func randomProbeAddress(domain string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return ProbeLocalPrefix + hex.EncodeToString(b) + "@" + domain
}

// isCatchAll tells whether domain's server accepts any address, asking it about a
// random one when no check holds. A server that accepts everything makes every callout
// a yes, which would turn every guessed address into a discovered user; so callouts of
// such a domain are not recorded, and a CatchAll observation tells the operator. Only
// one check per domain runs at a time; callouts that arrive meanwhile wait for it.
func (v *Verifier) isCatchAll(ctx context.Context, d *directory.Domain) bool {
	now := v.now()
	v.mu.Lock()
	c := v.catchAll[d.Name]
	if c != nil && c.known && now.Before(c.expires) {
		v.mu.Unlock()
		return c.catchAll
	}
	inflight := c != nil && !isClosed(c.done)
	if !inflight {
		c = &catchAllCheck{done: make(chan struct{})}
		v.catchAll[d.Name] = c
	}
	v.mu.Unlock()
	if inflight {
		select {
		case <-c.done:
			return c.catchAll
		case <-ctx.Done():
			return false
		}
	}

	ep := *d.InboundDelivery
	probe := v.opts.ProbeAddress(d.Name)
	res := v.opts.Prober.Probe(ctx, ep.Host, ep.Port, d.Name, probe)
	v.mu.Lock()
	c.known = res.Outcome != TempFailed
	c.catchAll = res.Outcome == Accepted
	c.expires = v.now().Add(v.opts.CatchAllTTL)
	if c.catchAll {
		v.stats.CatchAll++
	}
	close(c.done)
	v.mu.Unlock()
	if c.catchAll {
		v.log.Warn("discovery: the domain's server accepts any address; its callouts are not recorded",
			"domain", d.Name, "probe", probe, "code", res.Code)
		v.record(discoverystate.CatchAll, probe, now)
	}
	return c.catchAll
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
