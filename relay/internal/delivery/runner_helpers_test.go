package delivery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// fakeClock is a Clock that moves only when a test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{t, ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// harness is a runner over a real spool in a temporary directory, delivering into a
// world of loopback servers, with the sender's domain a.example managed and served
// by its own inbound server (where bounces land).
type harness struct {
	*world
	t       *testing.T
	clock   *fakeClock
	spool   *spool.Spool
	snap    *snapshot.Snapshot            // the config in force, as the test wrote it
	view    atomic.Pointer[compiled.View] // snap compiled, what the runner reads
	sender  *testkit.Server               // a.example's own server
	metrics *Metrics
	runner  *Runner
	stop    func()
}

func newHarness(t *testing.T, retry Retry, configure ...func(*snapshot.Snapshot)) *harness {
	t.Helper()
	h := &harness{world: newWorld(t), t: t, clock: newFakeClock()}
	sp, err := spool.Open(t.TempDir(), spool.Options{Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h.spool = sp
	h.sender = testkit.Start(t)
	snap := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Domains: []snapshot.Domain{{
		Name: "a.example", InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: h.sender.Port},
	}}}
	for _, f := range configure {
		f(snap)
	}
	h.load(snap)
	h.metrics, _ = NewMetrics(nil)
	client := h.client(func(o *ClientOptions) { o.Metrics = h.metrics })
	h.runner, err = NewRunner(RunnerOptions{
		Spool: sp, Client: client, View: h.view.Load, Retry: retry, Hostname: "relay.test",
		Clock: h.clock, Metrics: h.metrics, Workers: 4, PerDestination: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// load compiles s, as the relay's reloader does, and puts it in force.
func (h *harness) load(s *snapshot.Snapshot) {
	h.t.Helper()
	v, err := compiled.Build(s, nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.snap = s
	h.view.Store(v)
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.runner.Run(ctx) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}
	h.t.Cleanup(func() {
		h.stop()
		_ = h.spool.Close()
	})
}

func (h *harness) accept(sender string, rcpts ...string) string {
	h.t.Helper()
	id, err := h.spool.Accept(context.Background(), spool.Envelope{
		Sender: sender, Recipients: rcpts, Direction: DirectionOutbound,
	}, bytes.NewReader([]byte(message("test"))))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// eventually polls cond until it holds, failing the test after 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) waitGone(id string) {
	h.t.Helper()
	eventually(h.t, "message "+id+" to leave the spool", func() bool {
		_, err := h.spool.Get(id)
		return errors.Is(err, spool.ErrNotFound)
	})
}

// waitAttempt waits until message id has completed attempt n (all its recipients
// recorded with n attempts or final) and returns its state.
func (h *harness) waitAttempt(id string, n int) spool.Message {
	h.t.Helper()
	m, gone := h.waitAttemptOrGone(id, n)
	if gone {
		h.t.Fatalf("message %s left the spool before attempt %d was seen", id, n)
	}
	return m
}

// waitAttemptOrGone is waitAttempt for an attempt that may be the last one.
func (h *harness) waitAttemptOrGone(id string, n int) (m spool.Message, gone bool) {
	h.t.Helper()
	eventually(h.t, fmt.Sprintf("attempt %d of %s", n, id), func() bool {
		var err error
		m, err = h.spool.Get(id)
		if errors.Is(err, spool.ErrNotFound) {
			gone = true
			return true
		}
		if err != nil || m.Attempts < n {
			return false
		}
		for _, rs := range m.Recipients {
			if rs.Status == spool.StatusPending && rs.Attempts < n {
				return false
			}
		}
		return true
	})
	return m, gone
}

// report is a parsed DSN.
type report struct {
	from       string // envelope sender
	header     mail.Header
	recipients []textproto.MIMEHeader
	headers    string
}

func parseReport(t *testing.T, m testkit.Message) report {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("DSN is not a message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q", msg.Header.Get("Content-Type"))
	}
	r := report{from: m.From, header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return r
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(part)
		switch part.Header.Get("Content-Type") {
		case "message/delivery-status":
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(data, "\r\n"...))))
			if _, err := tr.ReadMIMEHeader(); err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			for {
				f, err := tr.ReadMIMEHeader()
				if len(f) > 0 {
					r.recipients = append(r.recipients, f)
				}
				if err != nil {
					break
				}
			}
		case "text/rfc822-headers":
			r.headers = string(data)
		}
	}
}
