package smtpd

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/test/testkit"
)

// sleeps records the delays the server asks for instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
}

func (s *sleeps) list() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// testEnv is a running Server on loopback with a real spool behind it.
type testEnv struct {
	t       testing.TB
	srv     *Server
	addr    string
	spool   *spool.Spool
	queue   Queue
	dir     atomic.Pointer[directory.Directory]
	logs    *testkit.LogBuffer
	sleeps  *sleeps
	metrics *metrics.Metrics
	tls     testPKI
}

type envOption func(*Options)

func withLimits(f func(*Limits)) envOption { return func(o *Options) { f(&o.Limits) } }

func newEnv(t testing.TB, mode Mode, opts ...envOption) *testEnv {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, spool: sp, queue: sp, logs: &testkit.LogBuffer{}, sleeps: &sleeps{}, tls: newPKI(t)}
	e.dir.Store(buildDir(t, testSnapshot(t)))
	e.metrics = metrics.New(prometheus.NewRegistry())
	o := Options{
		Mode:        mode,
		Hostname:    testHostname,
		TLSConfig:   e.tls.server,
		Directory:   e.dir.Load,
		Queue:       delegateQueue{e},
		Logger:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:     e.metrics,
		AuthLimiter: throttle.NewAuthLimiter(throttle.DefaultAuthLimits(), nil),
		Sleep:       e.sleeps.sleep,
	}
	for _, f := range opts {
		f(&o)
	}
	e.srv = New(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := sp.Close(); err != nil {
			t.Errorf("closing spool: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// delegateQueue sends to the env's current queue, which a test may replace.
type delegateQueue struct{ e *testEnv }

func (d delegateQueue) NewID() string { return d.e.queue.NewID() }
func (d delegateQueue) AcceptSealed(ctx context.Context, id string, env spool.Envelope, body io.Reader, seal func(*spool.Envelope) error, announce func()) error {
	return d.e.queue.AcceptSealed(ctx, id, env, body, seal, announce)
}

// queueFunc is a Queue that hands each message to a function, under a fixed id.
type queueFunc func(ctx context.Context, env spool.Envelope, body io.Reader) error

// queueFuncID is the id of every message a queueFunc takes.
const queueFuncID = "0000000000DISCARD0"

func (f queueFunc) NewID() string { return queueFuncID }
func (f queueFunc) AcceptSealed(ctx context.Context, _ string, env spool.Envelope, body io.Reader, seal func(*spool.Envelope) error, announce func()) error {
	if err := f(ctx, env, body); err != nil {
		return err
	}
	if seal != nil {
		if err := seal(&env); err != nil {
			return err
		}
	}
	if announce != nil {
		announce()
	}
	return nil
}

// message returns the queued envelope and body of id.
func (e *testEnv) message(id string) (spool.Envelope, string) {
	e.t.Helper()
	m, err := e.spool.Get(id)
	if err != nil {
		e.t.Fatalf("spool.Get(%s): %v", id, err)
	}
	f, err := e.spool.OpenBody(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	body, err := io.ReadAll(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return m.Envelope, string(body)
}
