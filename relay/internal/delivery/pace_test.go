package delivery

import (
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/testkit"
)

// Pacing with a real runner: a destination whose server holds every message fills its
// two transactions, more mail for it waits in the queue, and Pace then holds a
// transaction for that destination, not one for another, until the server lets go.
func TestPaceWaitsWhileADestinationFallsBehind(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, Retry{})
	h.runner.opts.InflowDelay = time.Minute // longer than the test: only easing ends a wait
	h.mx("slow.example", "mx.slow.example", 10, testkit.OnMessage(func(testkit.Message) { <-release }))
	h.start()
	for range 5 {
		h.accept("a@a.example", "rcpt@slow.example")
	}
	eventually(t, "the backlog of slow.example to reach the threshold", func() bool {
		n, _ := h.runner.backlog.get("slow.example")
		return n >= h.runner.opts.PerDestination
	})

	if waited := h.runner.Pace("other.example"); waited != 0 {
		t.Fatalf("Pace for a destination without backlog waited %v", waited)
	}
	paced := make(chan time.Duration, 1)
	go func() { paced <- h.runner.Pace("slow.example") }()
	select {
	case d := <-paced:
		t.Fatalf("Pace returned after %v with slow.example still behind", d)
	case <-time.After(100 * time.Millisecond):
	}

	close(release)
	select {
	case d := <-paced:
		if d <= 0 {
			t.Fatalf("Pace reports a wait of %v", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Pace still waits after the destination caught up")
	}
	eventually(t, "the queue to drain", func() bool { return h.spool.Len() == 0 })
	if waited := h.runner.Pace("slow.example"); waited != 0 {
		t.Fatalf("Pace after the queue drained waited %v", waited)
	}
}

// A wait never outlasts InflowDelay, however far behind delivery is; with pacing off
// there is no wait at all.
func TestPaceIsBounded(t *testing.T) {
	m, _ := NewMetrics(nil)
	r := &Runner{opts: RunnerOptions{PerDestination: 2, InflowDelay: 30 * time.Millisecond}, backlog: newBacklog(), metrics: m}
	r.backlog.publish(map[string]int{"slow.example": 1000}, 2)
	if waited := r.Pace("slow.example"); waited < 30*time.Millisecond {
		t.Fatalf("Pace waited %v, want InflowDelay", waited)
	}
	r.opts.InflowDelay = 0
	if waited := r.Pace("slow.example"); waited != 0 {
		t.Fatalf("Pace with pacing off waited %v", waited)
	}
}
