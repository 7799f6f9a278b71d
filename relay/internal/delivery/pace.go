package delivery

import (
	"sync"
	"time"
)

// DefaultInflowDelay is the longest a transaction waits for delivery to catch up:
// Postfix's in_flow_delay.
const DefaultInflowDelay = time.Second

// backlog is what the runner's last pass found waiting: due messages it could not start
// because their destinations or all workers were busy, counted per pending recipient
// domain. Pace reads it.
type backlog struct {
	mu      sync.Mutex
	waiting map[string]int
	// eased is closed, and replaced, when a destination that was at or above the
	// pacing threshold falls below it, so waiters wake only when they may go on.
	eased chan struct{}
}

func newBacklog() *backlog { return &backlog{waiting: map[string]int{}, eased: make(chan struct{})} }

// publish replaces the counts with those of a new pass.
func (b *backlog) publish(waiting map[string]int, threshold int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	eased := false
	for d, n := range b.waiting {
		if n >= threshold && waiting[d] < threshold {
			eased = true
			break
		}
	}
	b.waiting = waiting
	if eased {
		close(b.eased)
		b.eased = make(chan struct{})
	}
}

func (b *backlog) get(domain string) (int, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting[domain], b.eased
}

// Pace is the runner's half of flow control, as Postfix's in_flow_delay is: when more
// due messages for domain wait to be started than one destination may take at once
// (RunnerOptions.PerDestination), because delivery to it, or delivery as a whole, does
// not keep up with what arrives, the SMTP server calls Pace before it accepts a
// recipient of domain, once per transaction, and Pace waits until the backlog is below
// that again or InflowDelay has passed. Clients then send at the rate delivery keeps
// up with, instead of filling the queue with mail that waits seconds before it leaves;
// a destination that keeps up costs no wait, whatever another one does. It returns how
// long it waited.
func (r *Runner) Pace(domain string) time.Duration {
	if r.opts.InflowDelay <= 0 {
		return 0
	}
	n, eased := r.backlog.get(domain)
	if n < r.opts.PerDestination {
		return 0
	}
	start := time.Now()
	timer := time.NewTimer(r.opts.InflowDelay)
	defer timer.Stop()
	for n >= r.opts.PerDestination {
		select {
		case <-eased:
			n, eased = r.backlog.get(domain)
		case <-timer.C:
			n = 0
		}
	}
	waited := time.Since(start)
	r.metrics.PacedSeconds.Observe(waited.Seconds())
	return waited
}
