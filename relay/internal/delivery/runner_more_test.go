package delivery

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestSemaphoresBoundEachKey(t *testing.T) {
	s := newSemaphores(2)
	var active, peak atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "a.example"
			if i%2 == 1 {
				key = "b.example"
			}
			release := s.acquire(key, nil)
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			for range 50 {
				runtime.Gosched()
			}
			active.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 4 {
		t.Fatalf("%d holders at once across two keys of limit 2", p)
	}
	if len(s.m) != 0 {
		t.Fatalf("%d idle keys kept", len(s.m))
	}
	done := make(chan struct{})
	close(done)
	hold := s.acquire("c.example", nil)
	hold2 := s.acquire("c.example", nil)
	if s.acquire("c.example", done) != nil {
		t.Fatal("a full key granted a third slot")
	}
	hold()
	hold2()
}

func TestRunnerUsesTheSmarthost(t *testing.T) {
	h := newHarness(t, Retry{})
	smarthost := testkit.Start(t)
	h.runner.opts.Smarthost = &Target{Host: "127.0.0.1", Port: smarthost.Port}
	h.start()
	// No MX exists for either domain: only the smarthost can take them.
	id := h.accept("alice@a.example", "x@nomx.example", "y@nomx2.example", "bob@a.example")
	h.waitGone(id)
	if n := len(smarthost.Messages()); n != 2 {
		t.Fatalf("the smarthost got %d transactions, want one per domain", n)
	}
	if n := len(h.sender.Messages()); n != 1 {
		t.Fatalf("a managed domain's mail bypassed its inbound server: %d", n)
	}
}

func TestRunnerDrainsOnShutdown(t *testing.T) {
	h := newHarness(t, Retry{})
	// A host that accepts connections and never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			conns.Add(1)
			go func() { defer conns.Done(); buf := make([]byte, 1); c.Read(buf); c.Close() }()
		}
	}()
	h.dns.Add(t, "dest.example. MX 10 mute.dest.example.", "mute.dest.example. A 127.0.0.1")
	h.ports["mute.dest.example"] = ln.Addr().(*net.TCPAddr).Port
	h.runner.opts.DrainTimeout = 10 * time.Millisecond
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	<-accepted
	h.stop()
	h.stop = func() {}
	m, err := h.spool.Get(id)
	if err != nil {
		t.Fatalf("the message was lost at shutdown: %v", err)
	}
	rs := m.Recipients[0]
	if rs.Status != spool.StatusPending || rs.Attempts != m.Attempts || m.Attempts != 1 || !strings.Contains(rs.LastReply, "4.") {
		t.Fatalf("after shutdown: attempts %d, recipient %+v", m.Attempts, rs)
	}
}

func TestRunnerKeepsASlowDestinationFromBlockingOthers(t *testing.T) {
	h := newHarness(t, Retry{})
	slow := h.mx("slow.example", "mx.slow.example", 10)
	fast := h.mx("fast.example", "mx.fast.example", 10)
	release := slow.HoldData()
	t.Cleanup(release)
	h.runner.opts.Workers, h.runner.opts.PerDestination = 2, 1
	h.runner.perDest = newSemaphores(1)
	h.runner.sessions = make(chan struct{}, 2)
	var slowIDs []string
	for range 3 {
		slowIDs = append(slowIDs, h.accept("alice@a.example", "s@slow.example"))
	}
	fastID := h.accept("alice@a.example", "f@fast.example")
	h.start()
	eventually(t, "a delivery to wait at the slow destination", func() bool { return slow.Held() == 1 })
	h.waitGone(fastID)
	if len(fast.Messages()) != 1 {
		t.Fatal("the fast destination got nothing")
	}
	if n := slow.Held(); n != 1 {
		t.Fatalf("%d deliveries at once to a destination limited to 1", n)
	}
	release()
	for _, id := range slowIDs {
		h.waitGone(id)
	}
	if n := len(slow.Messages()); n != 3 {
		t.Fatalf("the slow destination got %d of 3", n)
	}
}

// countingSpool counts the states the runner reads.
type countingSpool struct {
	*spool.Spool
	mu    sync.Mutex
	reads map[string]int
}

func (s *countingSpool) Get(id string) (spool.Message, error) {
	s.mu.Lock()
	s.reads[id]++
	s.mu.Unlock()
	return s.Spool.Get(id)
}

func TestRunnerReadsAWaitingMessageOnce(t *testing.T) {
	h := newHarness(t, Retry{})
	slow := h.mx("slow.example", "mx.slow.example", 10)
	release := slow.HoldData()
	t.Cleanup(release)
	cs := &countingSpool{Spool: h.spool, reads: map[string]int{}}
	h.runner.opts.Spool = cs
	h.runner.opts.PerDestination = 1
	h.runner.perDest = newSemaphores(1)
	var ids []string
	for range 5 {
		ids = append(ids, h.accept("alice@a.example", "s@slow.example"))
	}
	h.start()
	eventually(t, "a delivery to wait at the slow destination", func() bool { return slow.Held() == 1 })
	// Each wake-up is a pass over the due messages; the four waiting ones must not be
	// read again.
	for range 20 {
		h.runner.signal()
		time.Sleep(time.Millisecond)
	}
	release()
	for _, id := range ids {
		h.waitGone(id)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, id := range ids {
		if n := cs.reads[id]; n != 1 {
			t.Errorf("message %s read %d times, want once", id, n)
		}
	}
}

func TestRunnerKeepsASessionForEachDeliveryAtOnce(t *testing.T) {
	h := newHarness(t, Retry{})
	opts := h.runner.opts
	opts.Workers, opts.PerDestination = 6, 6
	var err error
	if h.runner, err = NewRunner(opts); err != nil {
		t.Fatal(err)
	}
	srv := h.mx("dest.example", "mx.dest.example", 10)
	h.start()
	// Two rounds of six deliveries at once, each held in DATA until all six are there:
	// the second round must find the first round's six sessions in the pool.
	for round := range 2 {
		release := srv.HoldData()
		var ids []string
		for range 6 {
			ids = append(ids, h.accept("alice@a.example", "b@dest.example"))
		}
		eventually(t, fmt.Sprintf("six deliveries at once in round %d", round+1), func() bool { return srv.Held() == 6 })
		release()
		for _, id := range ids {
			h.waitGone(id)
		}
	}
	if n, got := srv.Connections(), len(srv.Messages()); n != 6 || got != 12 {
		t.Fatalf("%d messages over %d connections, want 12 over 6", got, n)
	}
}

func TestNegativeLimitsAreRefused(t *testing.T) {
	h := newHarness(t, Retry{})
	runner := func(edit func(*RunnerOptions)) func() error {
		return func() error {
			opts := h.runner.opts
			edit(&opts)
			_, err := NewRunner(opts)
			return err
		}
	}
	tests := map[string]func() error{
		"negative workers are refused":          runner(func(o *RunnerOptions) { o.Workers = -1 }),
		"a negative per-destination is refused": runner(func(o *RunnerOptions) { o.PerDestination = -1 }),
		"a negative drain timeout is refused":   runner(func(o *RunnerOptions) { o.DrainTimeout = -time.Second }),
		"a negative MX port is refused": func() error {
			_, err := NewClient(ClientOptions{HELOName: "relay.test", Resolver: h.resolver, Port: -1})
			return err
		},
	}
	for name, build := range tests {
		t.Run(name, func(t *testing.T) {
			if err := build(); err == nil {
				t.Fatal("built without an error")
			}
		})
	}
}
