package discovery

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
)

// Defaults, in the spirit of Postfix's address verification (postconf(5):
// address_verify_positive_expire_time 31d, _positive_refresh_time 7d,
// _negative_expire_time 3d, _negative_refresh_time 3h, address_verify_cache_size).
const (
	DefaultPositiveTTL     = 31 * 24 * time.Hour
	DefaultPositiveRefresh = 7 * 24 * time.Hour
	DefaultNegativeTTL     = 3 * 24 * time.Hour
	DefaultNegativeRefresh = 3 * time.Hour
	// DefaultTempfailTTL keeps a sending MTA's retries from causing a callout each;
	// it is short because the answer may change any moment.
	DefaultTempfailTTL = time.Minute
	// DefaultCacheSize holds tens of thousands of addresses for several domains.
	DefaultCacheSize = 200_000
	// DefaultRate and DefaultBurst: callouts per second to one destination.
	DefaultRate  = 5.0
	DefaultBurst = 10
	// DefaultMaxPerDestination callouts run at once to one destination, and
	// DefaultMaxConcurrent in all.
	DefaultMaxPerDestination = 4
	DefaultMaxConcurrent     = 64
	// DefaultCalloutTimeout bounds a whole callout, below the time a sending MTA waits
	// for a RCPT reply (RFC 5321 4.5.3.2: 5 minutes).
	DefaultCalloutTimeout = 30 * time.Second
)

// Recorder receives the observations of callouts (the Journal implements it).
type Recorder interface {
	Record(kind discoverystate.Kind, address string, at time.Time) error
}

// Options configure a Verifier. Zero values take the defaults above.
type Options struct {
	Prober Prober
	// Recorder, optional, records Verified and Refused observations.
	Recorder Recorder
	Logger   *slog.Logger
	// Now is the clock of the cache and the rate limits (nil: time.Now).
	Now func() time.Time

	PositiveTTL, PositiveRefresh time.Duration
	NegativeTTL, NegativeRefresh time.Duration
	// TempfailTTL; negative disables caching of temporary failures.
	TempfailTTL    time.Duration
	CacheSize      int
	Rate           float64
	Burst          int
	MaxPerDest     int
	MaxConcurrent  int
	CalloutTimeout time.Duration
	// CatchAllTTL is how long a domain's catch-all check holds (DefaultCatchAllTTL);
	// negative turns the checks off.
	CatchAllTTL time.Duration
	// ProbeAddress returns the address a catch-all check asks about (nil: a random
	// one, see ProbeLocalPrefix).
	ProbeAddress func(domain string) string
}

// Verifier is SMTP Discovery's smtpd.RecipientVerifier: it answers from its cache or
// runs one callout per address at a time, within the rate limits. It is safe for
// concurrent use; Close stops background refreshes.
type Verifier struct {
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	cache *cache
	limit *limiter

	base     context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	inflight map[string]*call
	catchAll map[string]*catchAllCheck
	callouts int
	stats    Stats
}

// Stats counts what a Verifier did, for metrics.
type Stats struct {
	// CacheHits were answered from the cache.
	CacheHits uint64
	// Coalesced waited for a callout another question had started.
	Coalesced uint64
	// Limited were deferred because a rate or concurrency limit was reached.
	Limited uint64
	// Outcomes counts finished callouts by outcome.
	Accepted, Refused, TempFailed uint64
	// CatchAll counts catch-all checks that found a domain's server accepting anything.
	CatchAll uint64
	// CacheEntries is the cache's current size.
	CacheEntries int
}

// call is one callout in flight; waiters block on done.
type call struct {
	done    chan struct{}
	outcome Outcome
	// joined counts the callers that found the call in flight.
	joined int
}

var _ smtpd.RecipientVerifier = (*Verifier)(nil)

// New returns a Verifier.
func New(opts Options) *Verifier {
	opts.PositiveTTL = cmp.Or(opts.PositiveTTL, DefaultPositiveTTL)
	opts.PositiveRefresh = cmp.Or(opts.PositiveRefresh, DefaultPositiveRefresh)
	opts.NegativeTTL = cmp.Or(opts.NegativeTTL, DefaultNegativeTTL)
	opts.NegativeRefresh = cmp.Or(opts.NegativeRefresh, DefaultNegativeRefresh)
	opts.TempfailTTL = cmp.Or(opts.TempfailTTL, DefaultTempfailTTL)
	opts.CacheSize = cmp.Or(opts.CacheSize, DefaultCacheSize)
	opts.Rate = cmp.Or(opts.Rate, DefaultRate)
	opts.Burst = cmp.Or(opts.Burst, DefaultBurst)
	opts.MaxPerDest = cmp.Or(opts.MaxPerDest, DefaultMaxPerDestination)
	opts.MaxConcurrent = cmp.Or(opts.MaxConcurrent, DefaultMaxConcurrent)
	opts.CalloutTimeout = cmp.Or(opts.CalloutTimeout, DefaultCalloutTimeout)
	opts.CatchAllTTL = cmp.Or(opts.CatchAllTTL, DefaultCatchAllTTL)
	if opts.ProbeAddress == nil {
		opts.ProbeAddress = randomProbeAddress
	}
	v := &Verifier{
		opts:     opts,
		log:      cmp.Or(opts.Logger, slog.Default()),
		now:      opts.Now,
		cache:    newCache(opts.CacheSize),
		limit:    newLimiter(opts.Rate, opts.Burst, opts.MaxPerDest, opts.MaxConcurrent),
		inflight: make(map[string]*call),
		catchAll: make(map[string]*catchAllCheck),
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.base, v.stop = context.WithCancel(context.Background())
	return v
}

// Close cancels callouts in flight and waits for them to end.
func (v *Verifier) Close() {
	v.stop()
	v.wg.Wait()
}

// Stats returns the counters so far.
func (v *Verifier) Stats() Stats {
	v.mu.Lock()
	st := v.stats
	v.mu.Unlock()
	st.CacheEntries = v.cache.len()
	return st
}

// Callouts returns how many callouts the Verifier has started.
func (v *Verifier) Callouts() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.callouts
}

// VerifyRecipient implements smtpd.RecipientVerifier. A domain without a discovery
// policy or without an inbound destination has no one to ask: the address is unknown.
func (v *Verifier) VerifyRecipient(ctx context.Context, d *directory.Domain, address string) (smtpd.Verdict, error) {
	if d == nil || d.DiscoveryPolicy == "" || d.InboundDelivery == nil {
		return smtpd.VerdictUnknown, nil
	}
	now := v.now()
	if e, stale, ok := v.cache.get(address, now); ok {
		v.mu.Lock()
		v.stats.CacheHits++
		v.mu.Unlock()
		if stale {
			// Serve the cached answer and ask again in the background.
			v.start(d, address, now)
		}
		return verdict(e.outcome), nil
	}
	c := v.start(d, address, now)
	if c == nil {
		return smtpd.VerdictDefer, nil
	}
	select {
	case <-c.done:
		return verdict(c.outcome), nil
	case <-ctx.Done():
		return smtpd.VerdictDefer, nil
	}
}

func verdict(o Outcome) smtpd.Verdict {
	switch o {
	case Accepted:
		return smtpd.VerdictAccept
	case Refused:
		return smtpd.VerdictUnknown
	}
	return smtpd.VerdictDefer
}

// start joins the callout in flight for address, or starts one if the limits allow;
// nil means neither.
func (v *Verifier) start(d *directory.Domain, address string, now time.Time) *call {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c := v.inflight[address]; c != nil {
		c.joined++
		v.stats.Coalesced++
		return c
	}
	if v.base.Err() != nil {
		return nil
	}
	ep := *d.InboundDelivery
	dest := net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
	release, ok := v.limit.acquire(dest, now)
	if !ok {
		v.stats.Limited++
		v.log.Debug("discovery callout limited", "destination", dest, "rcpt", address)
		return nil
	}
	c := &call{done: make(chan struct{})}
	v.inflight[address] = c
	v.callouts++
	v.wg.Go(func() {
		defer release()
		ctx, cancel := context.WithTimeout(v.base, v.opts.CalloutTimeout)
		defer cancel()
		res := v.opts.Prober.Probe(ctx, ep.Host, ep.Port, d.Name, address)
		catchAll := res.Outcome == Accepted && v.opts.CatchAllTTL > 0 && v.isCatchAll(ctx, d)
		v.finish(c, address, res, catchAll)
	})
	return c
}

// finish caches and records the outcome of a callout; the acceptance of a catch-all
// server is cached (the mail goes there anyway) but not recorded.
func (v *Verifier) finish(c *call, address string, res Result, catchAll bool) {
	now := v.now()
	e := entry{key: address, outcome: res.Outcome}
	cacheIt := true
	switch res.Outcome {
	case Accepted:
		e.refresh, e.expires = now.Add(v.opts.PositiveRefresh), now.Add(v.opts.PositiveTTL)
	case Refused:
		e.refresh, e.expires = now.Add(v.opts.NegativeRefresh), now.Add(v.opts.NegativeTTL)
	default:
		e.refresh, e.expires = now.Add(v.opts.TempfailTTL), now.Add(v.opts.TempfailTTL)
		// A tempfail does not replace a known answer that is only due a refresh: the
		// answer stays, and the next refresh waits as long as a tempfail is cached.
		if old, _, known := v.cache.get(address, now); known {
			e = old
			e.refresh = now.Add(max(v.opts.TempfailTTL, 0))
		}
		cacheIt = v.opts.TempfailTTL > 0 || e.outcome != TempFailed
	}
	if cacheIt {
		v.cache.put(e)
	}
	attrs := []any{"rcpt", address, "outcome", res.Outcome.String(), "code", res.Code, "tls", res.TLS}
	if res.Err != nil {
		attrs = append(attrs, "error", res.Err)
	}
	if catchAll {
		attrs = append(attrs, "catchAll", true)
	}
	v.log.Info("discovery callout", attrs...)
	if kind := map[Outcome]discoverystate.Kind{Accepted: discoverystate.Verified, Refused: discoverystate.Refused}[res.Outcome]; kind != "" && !catchAll {
		v.record(kind, address, now)
	}
	v.mu.Lock()
	delete(v.inflight, address)
	switch res.Outcome {
	case Accepted:
		v.stats.Accepted++
	case Refused:
		v.stats.Refused++
	default:
		v.stats.TempFailed++
	}
	c.outcome = res.Outcome
	v.mu.Unlock()
	close(c.done)
}

// record hands an observation to the Recorder, if any.
func (v *Verifier) record(kind discoverystate.Kind, address string, at time.Time) {
	if v.opts.Recorder == nil {
		return
	}
	if err := v.opts.Recorder.Record(kind, address, at); err != nil {
		v.log.Error("recording discovery observation", "kind", kind, "address", address, "error", err)
	}
}
