package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// ConnLimiter bounds concurrent connections overall and per client IP, and the rate of
// new connections per client IP (IPv6 clients are counted per /64, since one host
// usually owns a whole /64). Zero means unlimited.
type ConnLimiter struct {
	total, perIP, perMinute int
	now                     func() time.Time

	mu    sync.Mutex
	count int
	byIP  map[netip.Prefix]int
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

// NewConnLimiter returns a limiter for total and per-IP concurrent connections and for
// new connections per IP and minute; now is the clock (nil: time.Now).
func NewConnLimiter(total, perIP, perIPPerMinute int, now func() time.Time) *ConnLimiter {
	if now == nil {
		now = time.Now
	}
	return &ConnLimiter{total: total, perIP: perIP, perMinute: perIPPerMinute, now: now,
		byIP: map[netip.Prefix]int{}, rate: map[netip.Prefix]*bucket{}}
}

func connKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Acquire takes a slot for ip. It returns ok=false and the scope that refused
// ("total", "per_ip" or "rate") when a limit is reached; otherwise call release exactly
// once when the connection ends.
func (l *ConnLimiter) Acquire(ip netip.Addr) (release func(), ok bool, scope string) {
	k := connKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.count >= l.total {
		return nil, false, "total"
	}
	if l.perIP > 0 && l.byIP[k] >= l.perIP {
		return nil, false, "per_ip"
	}
	if l.perMinute > 0 && !l.takeToken(k) {
		return nil, false, "rate"
	}
	l.count++
	l.byIP[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.count--
			if l.byIP[k]--; l.byIP[k] <= 0 {
				delete(l.byIP, k)
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
	limit := float64(l.perMinute)
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
