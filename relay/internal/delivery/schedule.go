package delivery

import (
	"math"
	"math/rand/v2"
	"time"
)

// Clock tells the time and waits. The runner takes one so tests can drive time.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once the time is t or later. Taking an
	// instant rather than a duration means a clock that moves between Now and At
	// cannot push the wake-up later.
	At(t time.Time) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// Retry is the retry schedule. The defaults follow Postfix (first retry after 300 s,
// backoff capped near its 4000 s, 5 days' lifetime) with mox's doubling and jitter.
type Retry struct {
	// First is the delay after the first failed attempt; each further attempt waits
	// Factor times longer, up to Max, varied by ±Jitter (a fraction) so retries of
	// many messages spread out.
	First  time.Duration
	Factor float64
	Max    time.Duration
	Jitter float64
	// Lifetime is how long a message is retried before its pending recipients fail
	// with 4.4.7 (Postfix maximal_queue_lifetime).
	Lifetime time.Duration
	// DelayNotice is the age at which the sender is told once that delivery is
	// delayed; negative disables it.
	DelayNotice time.Duration
}

// DefaultRetry is the schedule used for zero fields.
var DefaultRetry = Retry{
	First: 5 * time.Minute, Factor: 2, Max: time.Hour, Jitter: 0.1,
	Lifetime: 5 * 24 * time.Hour, DelayNotice: 4 * time.Hour,
}

func (r Retry) withDefaults() Retry {
	d := DefaultRetry
	if r.First > 0 {
		d.First = r.First
	}
	if r.Factor >= 1 {
		d.Factor = r.Factor
	}
	if r.Max > 0 {
		d.Max = r.Max
	}
	if r.Jitter > 0 && r.Jitter < 1 {
		d.Jitter = r.Jitter
	}
	if r.Lifetime > 0 {
		d.Lifetime = r.Lifetime
	}
	if r.DelayNotice != 0 {
		d.DelayNotice = r.DelayNotice
	}
	return d
}

// Backoff is the wait after the attempt-th failed attempt (1 for the first).
func (r Retry) Backoff(attempt int) time.Duration {
	return r.backoff(attempt, rand.Float64())
}

func (r Retry) backoff(attempt int, u float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(r.First) * math.Pow(r.Factor, float64(attempt-1))
	d = math.Min(d, float64(r.Max))
	d *= 1 + r.Jitter*(2*u-1)
	return time.Duration(d)
}
