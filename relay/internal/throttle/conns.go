package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// ConnLimits are the bounds of a ConnLimiter; zero means unlimited.
type ConnLimits struct {
	// Total concurrent connections.
	Total int
	// PerIP concurrent connections from one client: an IPv4 address or an IPv6 /64,
	// since one host usually owns a whole /64.
	PerIP int
	// PerNetwork concurrent connections from one network: an IPv4 /24 or an IPv6 /48, so
	// that a few dozen addresses of one network cannot take every slot.
	PerNetwork int
	// PerIPPerMinute new connections from one client.
	PerIPPerMinute int
}

// ConnLimiter bounds concurrent connections overall, per client and per client network,
// and the rate of new connections per client.
type ConnLimiter struct {
	limits ConnLimits
	now    func() time.Time

	mu    sync.Mutex
	count int
	byIP  map[netip.Prefix]int
	byNet map[netip.Prefix]int
	// rate holds a token bucket per client that connected within the last minute;
	// swept once a minute, so its size follows the clients of the last minute.
	rate  map[netip.Prefix]*bucket
	swept time.Time
}

// bucket has tokens new connections, refilled at perMinute a minute up to perMinute.
type bucket struct {
	tokens float64
	at     time.Time
}

// NewConnLimiter returns a limiter with limits; now is the clock (nil: time.Now).
func NewConnLimiter(limits ConnLimits, now func() time.Time) *ConnLimiter {
	if now == nil {
		now = time.Now
	}
	return &ConnLimiter{limits: limits, now: now,
		byIP: map[netip.Prefix]int{}, byNet: map[netip.Prefix]int{}, rate: map[netip.Prefix]*bucket{}}
}

// connKey is a client: an IPv4 address or an IPv6 /64.
func connKey(ip netip.Addr) netip.Prefix { return prefixOf(ip, 32, 64) }

// netKey is a client's network: an IPv4 /24 or an IPv6 /48.
func netKey(ip netip.Addr) netip.Prefix { return prefixOf(ip, 24, 48) }

func prefixOf(ip netip.Addr, v4, v6 int) netip.Prefix {
	ip = ip.Unmap()
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Acquire takes a slot for ip. It returns ok=false and the scope that refused
// ("total", "per_ip", "per_network" or "rate") when a limit is reached; otherwise call
// release exactly once when the connection ends.
func (l *ConnLimiter) Acquire(ip netip.Addr) (release func(), ok bool, scope string) {
	k, n := connKey(ip), netKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limits.Total > 0 && l.count >= l.limits.Total {
		return nil, false, "total"
	}
	if l.limits.PerIP > 0 && l.byIP[k] >= l.limits.PerIP {
		return nil, false, "per_ip"
	}
	if l.limits.PerNetwork > 0 && l.byNet[n] >= l.limits.PerNetwork {
		return nil, false, "per_network"
	}
	if l.limits.PerIPPerMinute > 0 && !l.takeToken(k) {
		return nil, false, "rate"
	}
	l.count++
	l.byIP[k]++
	l.byNet[n]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.count--
			if l.byIP[k]--; l.byIP[k] <= 0 {
				delete(l.byIP, k)
			}
			if l.byNet[n]--; l.byNet[n] <= 0 {
				delete(l.byNet, n)
			}
		})
	}, true, ""
}

// takeToken spends one of k's tokens, if it has one. l.mu is held.
func (l *ConnLimiter) takeToken(k netip.Prefix) bool {
	now := l.now()
	if now.Sub(l.swept) >= time.Minute {
		// A bucket untouched for a minute is full again: forgetting it changes nothing.
		for p, b := range l.rate {
			if now.Sub(b.at) >= time.Minute {
				delete(l.rate, p)
			}
		}
		l.swept = now
	}
	limit := float64(l.limits.PerIPPerMinute)
	b := l.rate[k]
	if b == nil {
		b = &bucket{tokens: limit, at: now}
		l.rate[k] = b
	}
	b.tokens = min(limit, b.tokens+now.Sub(b.at).Minutes()*limit)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Count returns the connections currently held overall and for ip.
func (l *ConnLimiter) Count(ip netip.Addr) (total, forIP int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.byIP[connKey(ip)]
}
