package throttle

import (
	"net/netip"
	"sync"
)

// ConnLimiter bounds concurrent connections overall and per client IP (IPv6 clients are
// counted per /64, since one host usually owns a whole /64). Zero means unlimited.
type ConnLimiter struct {
	total, perIP int

	mu    sync.Mutex
	count int
	byIP  map[netip.Prefix]int
}

// NewConnLimiter returns a limiter for total and per-IP concurrent connections.
func NewConnLimiter(total, perIP int) *ConnLimiter {
	return &ConnLimiter{total: total, perIP: perIP, byIP: map[netip.Prefix]int{}}
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
// ("total" or "per_ip") when a limit is reached; otherwise call release exactly once
// when the connection ends.
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

// Count returns the connections currently held overall and for ip.
func (l *ConnLimiter) Count(ip netip.Addr) (total, forIP int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.byIP[connKey(ip)]
}
