package discovery

import (
	"sync"
	"time"
)

// limiter bounds callouts: a token bucket and a concurrency cap per destination, and a
// cap on all callouts at once. It never queues: a callout that does not fit is refused
// at once, and the recipient is deferred.
type limiter struct {
	rate       float64 // tokens per second
	burst      float64
	perDest    int
	total      int
	mu         sync.Mutex
	active     int
	dests      map[string]*bucket
	maxBuckets int
}

type bucket struct {
	tokens float64
	last   time.Time
	active int
}

func newLimiter(rate float64, burst, perDest, total int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), perDest: perDest, total: total,
		dests: make(map[string]*bucket), maxBuckets: 4096}
}

// acquire takes a token and a slot for dest at now; release gives the slot back.
func (l *limiter) acquire(dest string, now time.Time) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.dests[dest]
	if b == nil {
		if len(l.dests) >= l.maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.dests[dest] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if l.active >= l.total || b.active >= l.perDest || b.tokens < 1 {
		return nil, false
	}
	b.tokens--
	b.active++
	l.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			b.active--
			l.active--
			l.mu.Unlock()
		})
	}, true
}

// prune forgets idle destinations whose bucket has refilled: they are as good as new.
func (l *limiter) prune(now time.Time) {
	for d, b := range l.dests {
		if b.active == 0 && b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.dests, d)
		}
	}
}
