package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

// Spool is what the runner needs of the spool (*spool.Spool implements it).
type Spool interface {
	Accept(ctx context.Context, env spool.Envelope, body io.Reader) (string, error)
	DueIDs(now time.Time, limit int) []string
	Get(id string) (spool.Message, error)
	NextDue() (time.Time, bool)
	OpenBody(id string) (*spool.Body, error)
	Attempt(id string, attempts int, next time.Time) (*spool.Body, error)
	Update(m spool.Message) error
	Remove(id string) error
	Notify() <-chan struct{}
	IDs() []string
}

// Defaults for RunnerOptions. PerDestination is Postfix's
// default_destination_concurrency_limit; below Workers it would leave a relay whose
// mail goes to one destination (a smarthost, one big provider) a queue behind.
const (
	DefaultWorkers        = 16
	DefaultPerDestination = 20
	DefaultDrainTimeout   = 30 * time.Second
)

// RunnerOptions configure a Runner. Zero values take the defaults; a negative Workers,
// PerDestination or DrainTimeout is refused.
type RunnerOptions struct {
	Spool  Spool
	Client *Client
	// View returns the compiled config in force, whose managed domains and TLS policies
	// routing reads; it is called for every message, so a reload takes effect with the
	// next attempt. A nil view routes as a config without domains or policies.
	View func() *compiled.View
	// Loaded, when set, is closed once View has a view. Run delivers nothing before:
	// mail queued before a restart must not be routed without its domains'
	// destinations and TLS policies.
	Loaded <-chan struct{}
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
	// InflowDelay is the longest Pace makes a transaction wait; 0 turns pacing off.
	// The relay's flag defaults to DefaultInflowDelay.
	InflowDelay time.Duration
	Clock       Clock
	Metrics     *Metrics
	Logger      *slog.Logger
	// Delivered, optional, is called for each recipient whose server accepted the
	// message (2xx after DATA), with the direction of its route (DirectionInbound: the
	// managed domain's own server), once the outcome is written to the spool.
	Delivered func(rcpt, direction string)
	// Events, optional, takes a delivery event for every recipient outcome, as the
	// tracking line is written (before the outcome is in the spool: a crash may send an
	// event for an attempt that is then made again).
	Events EventSink
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
	perDest  *semaphores
	sessions chan struct{}
	wake     chan struct{}
	// claims keep the runner and an administrator's commands (Admin) off each other's
	// messages.
	claims *claims
	// backlog is what the last pass left waiting, for Pace.
	backlog *backlog

	// held are messages whose state could not be written; they wait until the time
	// given instead of being retried in a tight loop.
	heldMu sync.Mutex
	held   map[string]time.Time
}

// NewRunner checks opts and returns a Runner; call Run to start it.
func NewRunner(opts RunnerOptions) (*Runner, error) {
	if opts.Spool == nil || opts.Client == nil || opts.View == nil {
		return nil, errors.New("delivery: a runner needs a spool, a client and a config view")
	}
	if opts.Workers < 0 || opts.PerDestination < 0 || opts.DrainTimeout < 0 || opts.InflowDelay < 0 {
		return nil, errors.New("delivery: negative workers, per-destination limit, drain timeout or inflow delay")
	}
	opts.Workers = cmp.Or(opts.Workers, DefaultWorkers)
	opts.PerDestination = cmp.Or(opts.PerDestination, DefaultPerDestination)
	opts.DrainTimeout = cmp.Or(opts.DrainTimeout, DefaultDrainTimeout)
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
	opts.Client.keepIdle(opts.PerDestination)
	return &Runner{
		opts: opts, retry: opts.Retry.withDefaults(), clock: opts.Clock, log: opts.Logger,
		metrics: opts.Metrics, perDest: newSemaphores(opts.PerDestination),
		sessions: make(chan struct{}, opts.Workers), wake: make(chan struct{}, 1),
		claims: newClaims(), held: map[string]time.Time{}, backlog: newBacklog(),
	}, nil
}

// Run delivers due messages until ctx ends. It then starts nothing new, gives
// deliveries in progress DrainTimeout to finish, cuts the rest (their recipients are
// recorded as deferred) and returns once every outcome is written.
func (r *Runner) Run(ctx context.Context) error {
	if !r.waitForConfig(ctx) {
		return nil
	}
	work, cutWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cutWork()
	var wg sync.WaitGroup
	finished := make(chan string, r.opts.Workers)
	inflight := map[string][]string{} // message id → its pending domains
	busy := map[string]int{}          // domain → messages in flight for it
	// read keeps the states of due messages left waiting (their destinations were
	// busy), so each pass does not read them again. Only the runner changes a queued
	// message's state, and only while it is in flight, so a kept state stays current;
	// except for an administrator's commands, which claims.reread reports.
	read := map[string]spool.Message{}
	// seen is the pass's own, kept between passes to spare the allocation.
	seen := map[string]spool.Message{}
	for {
		now := r.clock.Now()
		full := len(inflight) >= r.opts.Workers
		var due []string
		scanned := !full
		if scanned {
			// Look past the head of the queue, so messages for a saturated
			// destination do not hold up the others.
			due = r.opts.Spool.DueIDs(now, 4*r.opts.Workers+len(inflight))
		}
		clear(seen)
		// Due messages this pass cannot start, by pending domain, for Pace. Those the
		// pass does not get to, once every worker is busy, count too.
		waiting := map[string]int{}
		for _, id := range due {
			if inflight[id] != nil || r.isHeld(id, now) {
				continue
			}
			m, ok := read[id]
			if r.claims.reread(id) {
				ok = false
			}
			if !ok {
				var err error
				if m, err = r.opts.Spool.Get(id); err != nil {
					if !errors.Is(err, spool.ErrNotFound) {
						r.log.Error("delivery: cannot read a queued message", "id", id, "err", err)
					}
					continue
				}
			}
			seen[id] = m
			domains := pendingDomains(m)
			if full || !slices.ContainsFunc(domains, func(d string) bool { return busy[d] < r.opts.PerDestination }) {
				// Picked up again when a delivery for these domains, or any, ends.
				for _, d := range domains {
					waiting[d]++
				}
				continue
			}
			if len(inflight) >= r.opts.Workers {
				full = true
				for _, d := range domains {
					waiting[d]++
				}
				continue
			}
			if r.claims.take(id, byDelivery) != unclaimed {
				continue // a command is changing it; its end wakes the runner
			}
			delete(seen, id)
			delete(read, id)
			inflight[m.ID] = domains
			for _, d := range domains {
				busy[d]++
			}
			r.metrics.InFlight.Inc()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.process(work, m)
				r.claims.release(m.ID, byDelivery)
				finished <- m.ID
			}()
		}
		if scanned {
			r.backlog.publish(waiting, r.opts.PerDestination)
		}
		if full { // the pass filled the workers: keep what it did not start
			maps.Copy(read, seen)
		} else {
			read, seen = seen, read
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
			for _, d := range inflight[id] {
				if busy[d]--; busy[d] <= 0 {
					delete(busy, d)
				}
			}
			delete(inflight, id)
			r.metrics.InFlight.Dec()
		case <-r.opts.Spool.Notify():
		case <-r.wake:
		case <-timer:
		}
	}
}

// waitForConfig returns once Loaded is closed (true), or when ctx ends first (false).
// While it waits, Metrics.WaitingForConfig is 1.
func (r *Runner) waitForConfig(ctx context.Context) bool {
	if r.opts.Loaded == nil {
		return true
	}
	select {
	case <-r.opts.Loaded:
		return true
	default:
	}
	r.log.Info("delivery waits for the first config: queued mail stays in the spool until one is loaded")
	r.metrics.WaitingForConfig.Set(1)
	defer r.metrics.WaitingForConfig.Set(0)
	select {
	case <-r.opts.Loaded:
		r.log.Info("config loaded: delivery starts")
		return true
	case <-ctx.Done():
		return false
	}
}

// pendingDomains lists the distinct domains of m's pending recipients; a message
// with none (only its removal is left) gets a placeholder so it is still dispatched.
func pendingDomains(m spool.Message) []string {
	var ds []string
	for _, rs := range m.Recipients {
		if d := domainOf(rs.Address); rs.Status == spool.StatusPending && !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		ds = []string{""}
	}
	return ds
}

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) hold(id string, until time.Time) {
	r.heldMu.Lock()
	r.held[id] = until
	r.heldMu.Unlock()
	r.signal()
}

// unpause forgets a wait set by hold, so a retry command is not kept waiting by it.
func (r *Runner) unpause(id string) {
	r.heldMu.Lock()
	delete(r.held, id)
	r.heldMu.Unlock()
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
