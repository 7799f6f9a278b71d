package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Spool is what the runner needs of the spool (*spool.Spool implements it).
type Spool interface {
	Accept(ctx context.Context, env spool.Envelope, body io.Reader) (string, error)
	Due(now time.Time, limit int) []spool.Message
	NextDue() (time.Time, bool)
	OpenBody(id string) (*os.File, error)
	Update(m spool.Message) error
	Remove(id string) error
	Notify() <-chan struct{}
}

// Defaults for RunnerOptions.
const (
	DefaultWorkers        = 16
	DefaultPerDestination = 4
	DefaultDrainTimeout   = 30 * time.Second
)

// RunnerOptions configure a Runner. Zero values take the defaults.
type RunnerOptions struct {
	Spool  Spool
	Client *Client
	// Config returns the current snapshot; it is called for every message, so a
	// reload takes effect with the next attempt.
	Config func() *snapshot.Snapshot
	// Smarthost, when set, takes all mail for unmanaged domains instead of their MX.
	Smarthost *Target
	// Workers bounds the messages delivered at once, and the SMTP transactions;
	// PerDestination bounds the transactions to one recipient domain.
	Workers, PerDestination int
	Retry                   Retry
	// Hostname names this relay in DSNs (Reporting-MTA, MAILER-DAEMON@); default
	// os.Hostname.
	Hostname string
	// DrainTimeout is how long Run lets deliveries in progress finish after its
	// context ends, before cutting their connections.
	DrainTimeout time.Duration
	Clock        Clock
	Metrics      *Metrics
	Logger       *slog.Logger
}

// Runner delivers what the spool holds. Every outcome is written to the spool before
// the message is removed, so a crash at any point loses nothing; at worst a recipient
// gets a message twice, which is counted in Metrics.PossibleDuplicates.
type Runner struct {
	opts     RunnerOptions
	retry    Retry
	clock    Clock
	log      *slog.Logger
	metrics  *Metrics
	routes   routeCache
	perDest  *semaphores
	sessions chan struct{}
	wake     chan struct{}

	// held are messages whose state could not be written; they wait until the time
	// given instead of being retried in a tight loop.
	heldMu sync.Mutex
	held   map[string]time.Time
}

// NewRunner checks opts and returns a Runner; call Run to start it.
func NewRunner(opts RunnerOptions) (*Runner, error) {
	if opts.Spool == nil || opts.Client == nil || opts.Config == nil {
		return nil, errors.New("delivery: a runner needs a spool, a client and a config source")
	}
	setDefault(&opts.Workers, DefaultWorkers)
	setDefault(&opts.PerDestination, DefaultPerDestination)
	setDefault(&opts.DrainTimeout, DefaultDrainTimeout)
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("delivery: no hostname: %w", err)
		}
		opts.Hostname = h
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Metrics == nil {
		opts.Metrics = opts.Client.metrics
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		opts: opts, retry: opts.Retry.withDefaults(), clock: opts.Clock, log: opts.Logger,
		metrics: opts.Metrics, perDest: newSemaphores(opts.PerDestination),
		sessions: make(chan struct{}, opts.Workers), wake: make(chan struct{}, 1),
		held: map[string]time.Time{},
	}, nil
}

// Run delivers due messages until ctx ends. It then starts nothing new, gives
// deliveries in progress DrainTimeout to finish, cuts the rest (their recipients are
// recorded as deferred) and returns once every outcome is written.
func (r *Runner) Run(ctx context.Context) error {
	work, cutWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cutWork()
	var wg sync.WaitGroup
	finished := make(chan string, r.opts.Workers)
	inflight := map[string]bool{}
	for {
		now := r.clock.Now()
		full := len(inflight) >= r.opts.Workers
		var due []spool.Message
		if !full {
			due = r.opts.Spool.Due(now, r.opts.Workers+len(inflight))
		}
		for _, m := range due {
			if inflight[m.ID] || r.isHeld(m.ID, now) {
				continue
			}
			if len(inflight) >= r.opts.Workers {
				full = true
				break
			}
			inflight[m.ID] = true
			r.metrics.InFlight.Inc()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.process(work, m)
				finished <- m.ID
			}()
		}
		var timer <-chan time.Time
		if next, ok := r.opts.Spool.NextDue(); ok && !full {
			// A due time in the past belongs to a message just started, whose next
			// attempt is being written; r.wake fires once it is.
			if next.After(now) {
				timer = r.clock.At(next)
			}
		}
		if until, ok := r.firstHeld(); ok && timer == nil {
			timer = r.clock.At(until)
		}
		select {
		case <-ctx.Done():
			stop := time.AfterFunc(r.opts.DrainTimeout, cutWork)
			go func() {
				for range finished {
					r.metrics.InFlight.Dec()
				}
			}()
			wg.Wait()
			stop.Stop()
			close(finished)
			return nil
		case id := <-finished:
			delete(inflight, id)
			r.metrics.InFlight.Dec()
		case <-r.opts.Spool.Notify():
		case <-r.wake:
		case <-timer:
		}
	}
}

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// process makes one delivery attempt for every pending recipient of m.
func (r *Runner) process(ctx context.Context, m spool.Message) {
	log := r.log.With("id", m.ID)
	var pending []int
	for i, rs := range m.Recipients {
		if rs.Status == spool.StatusPending {
			pending = append(pending, i)
			if rs.Attempts < m.Attempts {
				// The attempt recorded below was never completed: the process died
				// with this recipient in flight.
				r.metrics.PossibleDuplicates.Inc()
				log.Warn("delivery: retrying a recipient whose last attempt was interrupted", "rcpt", rs.Address)
			}
		}
	}
	if len(pending) == 0 {
		r.finish(ctx, m, log) // a crash came between the last update and the removal
		return
	}

	// Write the attempt down first: a crash from here on retries after the backoff
	// and is recognised as a possible duplicate.
	start := r.clock.Now()
	m.Attempts++
	m.NextAttempt = r.nextAttempt(m, start)
	if err := r.opts.Spool.Update(m); err != nil {
		log.Error("delivery: cannot record the attempt; not delivering", "err", err)
		r.hold(m.ID, start.Add(r.retry.First))
		return
	}
	r.signal()

	body, err := r.opts.Spool.OpenBody(m.ID)
	if err != nil {
		log.Error("delivery: cannot open the queued message", "err", err)
		return
	}
	defer body.Close()

	rt, err := r.routes.get(r.opts.Config())
	if err != nil {
		log.Error("delivery: the configuration's TLS policies do not compile; retrying later", "err", err)
		return
	}
	groups := map[string][]int{}
	var order []string
	for _, i := range pending {
		d := domainOf(m.Recipients[i].Address)
		if groups[d] == nil {
			order = append(order, d)
		}
		groups[d] = append(groups[d], i)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, domain := range order {
		idx := groups[domain]
		wg.Add(1)
		go func() {
			defer wg.Done()
			route, direction := rt.route(m.Envelope.Sender, domain, r.opts.Smarthost)
			res := r.deliverGroup(ctx, m, route, idx, io.NewSectionReader(body, 0, m.Size))
			mu.Lock()
			defer mu.Unlock()
			r.apply(&m, idx, res, direction)
		}()
	}
	wg.Wait()
	r.after(ctx, m, rt, log)
}

func (r *Runner) nextAttempt(m spool.Message, now time.Time) time.Time {
	next := now.Add(r.retry.Backoff(m.Attempts))
	// The last attempt happens when the lifetime ends, not a backoff after it.
	if end := m.Envelope.ReceivedAt.Add(r.retry.Lifetime); next.After(end) && end.After(now) {
		next = end
	}
	return next
}

// deliverGroup runs one transaction for the recipients idx of m, within the
// concurrency bounds.
func (r *Runner) deliverGroup(ctx context.Context, m spool.Message, route Route, idx []int, body io.ReadSeeker) Result {
	deferAll := func(reason string) Result {
		res := Result{}
		for _, i := range idx {
			res.Recipients = append(res.Recipients, RecipientResult{Address: m.Recipients[i].Address, Outcome: Deferred, Status: "4.3.0", Reason: reason})
		}
		return res
	}
	release := r.perDest.acquire(route.Domain, ctx.Done())
	if release == nil {
		return deferAll("delivery interrupted by shutdown")
	}
	defer release()
	select {
	case r.sessions <- struct{}{}:
		defer func() { <-r.sessions }()
	case <-ctx.Done():
		return deferAll("delivery interrupted by shutdown")
	}
	rcpts := make([]string, len(idx))
	for k, i := range idx {
		rcpts[k] = m.Recipients[i].Address
	}
	return r.opts.Client.Deliver(ctx, Request{
		Route: route, Sender: m.Envelope.Sender, Recipients: rcpts, Body: body, Size: m.Size,
	})
}

// apply records a group's outcomes in m.
func (r *Runner) apply(m *spool.Message, idx []int, res Result, direction string) {
	now := r.clock.Now()
	expired := !now.Before(m.Envelope.ReceivedAt.Add(r.retry.Lifetime))
	for k, i := range idx {
		out := res.Recipients[k]
		rs := &m.Recipients[i]
		rs.Attempts, rs.UpdatedAt = m.Attempts, now
		host := ""
		if out.Reply != "" {
			host = res.RemoteMTA
		}
		rs.LastReply = formatReply(out.Status, host, out.Text())
		result := "deferred"
		switch {
		case out.Outcome == Delivered:
			rs.Status, result = spool.StatusDelivered, "delivered"
		case out.Outcome == Failed:
			rs.Status, result = spool.StatusFailed, "bounced"
		case expired:
			rs.Status, result = spool.StatusFailed, "expired"
			rs.LastReply = formatReply("4.4.7", host, out.Text()+" (gave up: delivery time expired)")
		}
		r.metrics.Recipients.WithLabelValues(direction, result).Inc()
		r.log.Info("delivery: attempt", "id", m.ID, "rcpt", rs.Address, "result", result,
			"attempt", m.Attempts, "remote", res.RemoteMTA, "tls", res.TLS.VersionName(),
			"verified", res.TLS.Verified, "reply", rs.LastReply)
	}
}

// after writes the attempt's outcome: removal when every recipient is final, else the
// new state, with a delay notice when one is due.
func (r *Runner) after(ctx context.Context, m spool.Message, rt *routes, log *slog.Logger) {
	pending := 0
	for _, rs := range m.Recipients {
		if rs.Status == spool.StatusPending {
			pending++
		}
	}
	if pending == 0 {
		if hasFailed(m) && m.Envelope.Sender != "" {
			// The DSN goes out only after the outcome is durable, so a crash can
			// duplicate a DSN but never redeliver the message.
			if err := r.opts.Spool.Update(m); err != nil {
				log.Error("delivery: cannot record the outcome", "err", err)
				return
			}
		}
		r.finish(ctx, m, log)
		return
	}
	now := r.clock.Now()
	if r.retry.DelayNotice > 0 && !m.DelayNotified && m.Envelope.Sender != "" &&
		!now.Before(m.Envelope.ReceivedAt.Add(r.retry.DelayNotice)) {
		if err := r.notify(ctx, m, rt, true); err != nil {
			log.Error("delivery: cannot queue the delay notice", "err", err)
		} else {
			m.DelayNotified = true
		}
	}
	if err := r.opts.Spool.Update(m); err != nil {
		log.Error("delivery: cannot record the outcome", "err", err)
	}
}

// finish bounces the failed recipients of a message whose recipients are all final,
// then removes it.
func (r *Runner) finish(ctx context.Context, m spool.Message, log *slog.Logger) {
	if hasFailed(m) {
		if m.Envelope.Sender == "" {
			log.Info("delivery: not bouncing a message from the null sender")
		} else {
			rt, err := r.routes.get(r.opts.Config())
			if err == nil {
				err = r.notify(ctx, m, rt, false)
			}
			if err != nil {
				// Keep the message: the bounce is retried with the next attempt.
				log.Error("delivery: cannot queue the bounce", "err", err)
				m.NextAttempt = r.clock.Now().Add(r.retry.First)
				_ = r.opts.Spool.Update(m)
				return
			}
		}
	}
	if err := r.opts.Spool.Remove(m.ID); err != nil {
		log.Error("delivery: cannot remove a finished message", "err", err)
	}
}

func hasFailed(m spool.Message) bool {
	for _, rs := range m.Recipients {
		if rs.Status == spool.StatusFailed {
			return true
		}
	}
	return false
}

func (r *Runner) hold(id string, until time.Time) {
	r.heldMu.Lock()
	r.held[id] = until
	r.heldMu.Unlock()
	r.signal()
}

func (r *Runner) isHeld(id string, now time.Time) bool {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	until, ok := r.held[id]
	if ok && !now.Before(until) {
		delete(r.held, id)
		return false
	}
	return ok
}

func (r *Runner) firstHeld() (time.Time, bool) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	var first time.Time
	for _, t := range r.held {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero()
}
