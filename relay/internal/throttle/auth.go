// Package throttle limits what one client, or one network, may do to the relay: failed
// AUTH attempts (with a growing delay) and concurrent connections. Limiters take an
// injectable clock so that tests never sleep.
package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// Window is a limit on events per minute and per day.
type Window struct {
	PerMinute, PerDay int
}

// AuthLimits are the failed-AUTH limits. The defaults are mox's (mox-/limitauth.go): per IP
// 10/min and 50/day, per /26 30/min and 150/day, per /21 90/min and 450/day. IPv6 uses
// /64, /56 and /48 for the three levels, the usual allocation sizes for one host, one
// site and one customer.
type AuthLimits struct {
	IP, Net, WideNet Window
	// DelayAfter failures from one IP in the current day, each further failure is
	// answered after DelayStep times the excess, at most MaxDelay.
	DelayAfter int
	DelayStep  time.Duration
	MaxDelay   time.Duration
}

// DefaultAuthLimits returns mox's numbers and a delay of 1 s per failure from the 4th on,
// capped at 5 s.
func DefaultAuthLimits() AuthLimits {
	return AuthLimits{
		IP:         Window{PerMinute: 10, PerDay: 50},
		Net:        Window{PerMinute: 30, PerDay: 150},
		WideNet:    Window{PerMinute: 90, PerDay: 450},
		DelayAfter: 3,
		DelayStep:  time.Second,
		MaxDelay:   5 * time.Second,
	}
}

// AuthLimiter counts failed AUTH attempts in fixed one-minute and one-day windows per IP,
// per network and per wide network. It is safe for concurrent use.
type AuthLimiter struct {
	limits AuthLimits
	now    func() time.Time

	mu     sync.Mutex
	minute int64 // index of the current minute window
	day    int64
	perMin map[netip.Prefix]int
	perDay map[netip.Prefix]int
}

// NewAuthLimiter returns a limiter; now is the clock (nil: time.Now).
func NewAuthLimiter(l AuthLimits, now func() time.Time) *AuthLimiter {
	if now == nil {
		now = time.Now
	}
	return &AuthLimiter{limits: l, now: now, perMin: map[netip.Prefix]int{}, perDay: map[netip.Prefix]int{}}
}

// Scope names which level of an AuthLimiter refused a client.
type Scope string

const (
	ScopeNone    Scope = ""
	ScopeIP      Scope = "ip"
	ScopeNet     Scope = "net"
	ScopeWideNet Scope = "wide_net"
)

func keys(ip netip.Addr) [3]netip.Prefix {
	ip = ip.Unmap()
	bits := [3]int{32, 26, 21}
	if !ip.Is4() {
		bits = [3]int{64, 56, 48}
	}
	var k [3]netip.Prefix
	for i, b := range bits {
		k[i], _ = ip.Prefix(b)
	}
	return k
}

// roll starts new windows when the clock has moved past the current ones. Fixed windows
// keep the memory bounded: every counter is dropped at the end of its window.
func (l *AuthLimiter) roll() {
	t := l.now()
	if m := t.Unix() / 60; m != l.minute {
		l.minute = m
		clear(l.perMin)
	}
	if d := t.Unix() / 86400; d != l.day {
		l.day = d
		clear(l.perDay)
	}
}

func (l *AuthLimiter) windows() [3]Window {
	return [3]Window{l.limits.IP, l.limits.Net, l.limits.WideNet}
}

// Allow reports whether ip may try to authenticate, and if not which level refused it.
func (l *AuthLimiter) Allow(ip netip.Addr) (bool, Scope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll()
	scopes := [3]Scope{ScopeIP, ScopeNet, ScopeWideNet}
	for i, k := range keys(ip) {
		w := l.windows()[i]
		if w.PerMinute > 0 && l.perMin[k] >= w.PerMinute || w.PerDay > 0 && l.perDay[k] >= w.PerDay {
			return false, scopes[i]
		}
	}
	return true, ScopeNone
}

// Failure records a failed attempt from ip and returns how long to wait before
// answering it.
func (l *AuthLimiter) Failure(ip netip.Addr) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll()
	for _, k := range keys(ip) {
		l.perMin[k]++
		l.perDay[k]++
	}
	n := l.perDay[keys(ip)[0]]
	if l.limits.DelayAfter <= 0 || n <= l.limits.DelayAfter {
		return 0
	}
	d := time.Duration(n-l.limits.DelayAfter) * l.limits.DelayStep
	if l.limits.MaxDelay > 0 && d > l.limits.MaxDelay {
		d = l.limits.MaxDelay
	}
	return d
}
