package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postwarden/postwarden/test/testkit"
)

// sink is the downstream SMTP server both relays deliver to: testkit's, on loopback,
// plaintext, keeping only envelopes and header sections (WithDiscard), and noting the
// time each message's Message-ID arrived. The kit's bookkeeping costs about a
// microsecond and a few allocations a message (BenchmarkDiscardSink in test/testkit),
// next to a loopback SMTP transaction's hundreds.
type sink struct {
	*testkit.Server
	track atomic.Pointer[tracker]
	stray atomic.Int64 // messages no run was waiting for
}

func startSink() (*sink, error) {
	s := &sink{}
	srv, err := testkit.NewServer("127.0.0.1:0", testkit.WithDomain("sink.bench.example"), testkit.WithDiscard(),
		testkit.OnMessage(s.arrived))
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s.Server = srv
	addCleanup(func() { _ = srv.Close() })
	return s, nil
}

// arrived matches a message to its submission by Message-ID.
func (s *sink) arrived(m testkit.Message) {
	now := time.Now()
	if t := s.track.Load(); t == nil || !t.arrived(messageID(m.Data), now) {
		s.stray.Add(1)
	}
}

// messageID returns the Message-ID field of a header section.
func messageID(header []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(header))
	sc.Buffer(make([]byte, 4096), len(header)+1)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.EqualFold(name, "Message-ID") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// tracker matches one run's messages, by Message-ID, from submission to the sink.
type tracker struct {
	mu      sync.Mutex
	sent    map[string]time.Time
	lat     []time.Duration
	last    time.Time
	changed chan struct{} // closed and replaced on every arrival
}

func newTracker(n int) *tracker {
	return &tracker{sent: make(map[string]time.Time, n), changed: make(chan struct{})}
}

// sending notes that the message id is being submitted now.
func (t *tracker) sending(id string, at time.Time) {
	t.mu.Lock()
	t.sent[id] = at
	t.mu.Unlock()
}

func (t *tracker) arrived(id string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t0, ok := t.sent[id]
	if !ok {
		return false
	}
	delete(t.sent, id)
	t.lat = append(t.lat, at.Sub(t0))
	t.last = at
	close(t.changed)
	t.changed = make(chan struct{})
	return true
}

// wait blocks until n messages have arrived, or until none has for idle; it returns the
// latencies and the time of the last arrival.
func (t *tracker) wait(n int, idle time.Duration) ([]time.Duration, time.Time, error) {
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		t.mu.Lock()
		got, changed := len(t.lat), t.changed
		if got >= n {
			lat, last := append([]time.Duration(nil), t.lat...), t.last
			t.mu.Unlock()
			return lat, last, nil
		}
		t.mu.Unlock()
		select {
		case <-changed:
			timer.Reset(idle)
		case <-timer.C:
			return nil, time.Time{}, fmt.Errorf("%d of %d messages reached the sink; none for %v", got, n, idle)
		}
	}
}
