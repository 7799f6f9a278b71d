package webhook

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Defaults for Options.
const (
	DefaultQueueSize    = 1000
	DefaultMaxDiskBytes = 64 << 20
	DefaultTimeout      = 10 * time.Second
	DefaultRetryFirst   = 10 * time.Second
	DefaultRetryMax     = 10 * time.Minute
	DefaultGiveUp       = 24 * time.Hour
	DefaultConcurrency  = 8
)

// Options configure a Sender. Zero values take the defaults above.
type Options struct {
	// Dir is where pending events are kept: a folder of the spool volume.
	Dir string
	// Resolve returns the current endpoint of a managed domain and the key its events
	// are signed with (nil when the relay does not have it); a nil Webhook when the
	// domain sends no events. compiled.View.DeliveryEvents is one.
	Resolve func(domain string) (*snapshot.Webhook, []byte)
	// Dial opens the TCP connections of the POSTs; the relay passes
	// outbound.Dialer.DialGuarded, which refuses non-public addresses. Nil: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs returns the pool that verifies the endpoints' certificates, and is asked
	// before each POST, so a pool that changes (the relay's --delivery-events-ca-file,
	// reloaded) is used from the next POST on; new connections are opened for a new
	// pool. Nil, or a nil pool: the system roots.
	RootCAs func() *x509.CertPool
	// QueueSize bounds the events handed over by Enqueue and not yet stored.
	QueueSize int
	// MaxDiskBytes bounds the stored events.
	MaxDiskBytes int64
	// Timeout bounds one POST, connection and response included.
	Timeout time.Duration
	// RetryFirst is the wait after an endpoint's first failure, doubled after each
	// further one up to RetryMax.
	RetryFirst, RetryMax time.Duration
	// GiveUp is how old an event may become before it is dropped unsent.
	GiveUp time.Duration
	// Concurrency bounds the endpoints POSTed to at once.
	Concurrency int
	Now         func() time.Time
	Metrics     *Metrics
	Logger      *slog.Logger
}

// Sender takes delivery events and sends them; see the package doc.
type Sender struct {
	opts  Options
	store *store
	in    chan record
	slots chan struct{}

	clientMu sync.Mutex
	client   *http.Client   // for roots; see httpClient
	roots    *x509.CertPool // the pool client verifies with

	mu      sync.Mutex
	running map[string]bool // endpoints with a worker
	workers sync.WaitGroup
	ctx     context.Context // Run's, for the workers
}

// New opens the store in opts.Dir, with what a previous run left pending.
func New(opts Options) (*Sender, error) {
	if opts.Dir == "" || opts.Resolve == nil {
		return nil, errors.New("webhook: a sender needs a folder and a resolver")
	}
	opts.QueueSize = cmp.Or(opts.QueueSize, DefaultQueueSize)
	opts.MaxDiskBytes = cmp.Or(opts.MaxDiskBytes, DefaultMaxDiskBytes)
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	opts.RetryFirst = cmp.Or(opts.RetryFirst, DefaultRetryFirst)
	opts.RetryMax = cmp.Or(opts.RetryMax, DefaultRetryMax)
	opts.GiveUp = cmp.Or(opts.GiveUp, DefaultGiveUp)
	opts.Concurrency = cmp.Or(opts.Concurrency, DefaultConcurrency)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = NewMetrics(nil) // unregistered: cannot fail
	}
	if opts.Dial == nil {
		opts.Dial = (&net.Dialer{Timeout: opts.Timeout}).DialContext
	}
	st, err := openStore(opts.Dir, opts.MaxDiskBytes)
	if err != nil {
		return nil, err
	}
	s := &Sender{opts: opts, store: st, in: make(chan record, opts.QueueSize),
		slots: make(chan struct{}, opts.Concurrency), running: map[string]bool{}}
	s.gauge()
	return s, nil
}

// httpClient returns the client for the pool opts.RootCAs returns now. When the pool
// changed, a new client (a new transport, with new connections) replaces the last one,
// whose idle connections are closed; POSTs in flight on it finish as they are.
func (s *Sender) httpClient() *http.Client {
	var roots *x509.CertPool
	if s.opts.RootCAs != nil {
		roots = s.opts.RootCAs()
	}
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if s.client != nil && roots == s.roots {
		return s.client
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	s.client, s.roots = s.newClient(roots), roots
	return s.client
}

func (s *Sender) newClient(roots *x509.CertPool) *http.Client {
	transport := &http.Transport{
		// No proxy from the environment: the guard must judge the endpoint itself.
		Proxy:                 nil,
		DialContext:           s.opts.Dial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   s.opts.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: s.opts.Timeout,
	}
	return &http.Client{Transport: transport, Timeout: s.opts.Timeout,
		// A redirect is a failure: following it would send the event, signed, where
		// the domain's owner did not say.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Enqueue takes ev for its domain's endpoint, if the domain has one that wants ev's
// type. It never blocks: an event that finds the hand-off full, or whose domain's key
// is missing, is dropped and counted.
func (s *Sender) Enqueue(ev Event) {
	w, key := s.opts.Resolve(ev.Domain)
	if !w.Wants(ev.Type) {
		return
	}
	if key == nil {
		s.drop(ev.Type, DropNoKey)
		return
	}
	if ev.ID == "" {
		ev.ID = NewID()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		s.drop(ev.Type, DropError)
		return
	}
	select {
	case s.in <- record{URL: w.URL, Domain: ev.Domain, Type: ev.Type, Time: ev.Timestamp, Body: body}:
	default:
		s.drop(ev.Type, DropQueueFull)
	}
}

// Run stores the events Enqueue takes and sends what is stored, until ctx ends. Then it
// stores what is still in the hand-off, waits for the POSTs in flight to end (they are
// cut by ctx, and sent again at the next start) and returns.
func (s *Sender) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	for _, key := range s.store.keys() {
		s.wake(key)
	}
	for {
		select {
		case r := <-s.in:
			s.put(r)
		case <-ctx.Done():
			for {
				select {
				case r := <-s.in:
					s.put(r)
				default:
					s.workers.Wait()
					return
				}
			}
		}
	}
}

// put stores r and makes sure its endpoint has a worker.
func (s *Sender) put(r record) {
	key, err := s.store.append(r)
	switch {
	case errors.Is(err, errDiskFull):
		s.drop(r.Type, DropDiskFull)
		return
	case err != nil:
		s.opts.Logger.Error("delivery events: cannot store an event", "domain", r.Domain, "error", err)
		s.drop(r.Type, DropError)
		return
	}
	s.gauge()
	s.wake(key)
}

// wake starts endpoint key's worker unless it runs; the worker ends when the
// endpoint's queue is empty, and is started again by the next event.
func (s *Sender) wake(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[key] || s.ctx == nil || s.ctx.Err() != nil {
		return
	}
	s.running[key] = true
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		s.work(s.ctx, key)
	}()
}

func (s *Sender) drop(eventType, reason string) {
	s.opts.Metrics.Dropped.WithLabelValues(eventType, reason).Inc()
}

func (s *Sender) gauge() {
	events, bytes := s.store.size()
	s.opts.Metrics.Pending.Set(float64(events))
	s.opts.Metrics.PendingBytes.Set(float64(bytes))
}
