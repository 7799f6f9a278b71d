package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/internal/tlspolicy"
)

// Defaults in the spirit of Postfix (smtp_connect_timeout 30 s) and RFC 5321 4.5.3.2
// (5 minutes per command, 10 minutes for the reply to the final dot).
const (
	DefaultPort            = 25
	DefaultConnectTimeout  = 30 * time.Second
	DefaultCommandTimeout  = 5 * time.Minute
	DefaultDataTimeout     = 10 * time.Minute
	DefaultIdleTimeout     = 10 * time.Second
	DefaultMaxSessionAge   = 5 * time.Minute
	DefaultMaxIdlePerHost  = 2
	DefaultMaxAddresses    = 5
	defaultMaxSessionUses  = 100
	defaultJanitorInterval = 5 * time.Second
)

// ClientOptions configure a Client. Zero values take the defaults above.
type ClientOptions struct {
	// HELOName is the name sent in EHLO; the default is the host name.
	HELOName string
	// Resolver finds MX hosts and addresses. Required.
	Resolver *mx.Resolver
	// Port is the SMTP port of MX hosts.
	Port int
	// PortOverrides maps a host name (an MX or endpoint host) to a port, so tests can
	// run several servers on loopback.
	PortOverrides map[string]int
	// Dial opens connections; the default is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds the TCP connect; CommandTimeout each command's reply and the
	// TLS handshake; DataTimeout the reply to the final dot.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	// IdleTimeout is how long a session may wait in the pool; MaxSessionAge how long
	// it may be reused at all; MaxIdlePerHost how many wait per destination.
	IdleTimeout, MaxSessionAge time.Duration
	MaxIdlePerHost             int
	// MaxAddresses bounds the addresses tried for one delivery (Postfix
	// smtp_mx_address_limit).
	MaxAddresses int
	Metrics      *Metrics
	Logger       *slog.Logger
}

// Client delivers messages over SMTP and keeps idle sessions for reuse. It is safe for
// concurrent use.
type Client struct {
	opts    ClientOptions
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	idle   map[poolKey][]*session
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// NewClient returns a Client; Close it to end idle sessions.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Resolver == nil {
		return nil, errors.New("delivery: a resolver is required")
	}
	if opts.HELOName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("delivery: no HELO name and no host name: %w", err)
		}
		opts.HELOName = h
	}
	setDefault(&opts.Port, DefaultPort)
	setDefault(&opts.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&opts.CommandTimeout, DefaultCommandTimeout)
	setDefault(&opts.DataTimeout, DefaultDataTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.MaxSessionAge, DefaultMaxSessionAge)
	setDefault(&opts.MaxIdlePerHost, DefaultMaxIdlePerHost)
	setDefault(&opts.MaxAddresses, DefaultMaxAddresses)
	if opts.Dial == nil {
		opts.Dial = (&net.Dialer{}).DialContext
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = NewMetrics(nil)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cl := &Client{
		opts: opts, metrics: opts.Metrics, log: opts.Logger, now: time.Now,
		idle: make(map[poolKey][]*session), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go cl.janitor()
	return cl, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Target is one host to try, with its port (0: the client's port).
type Target struct {
	Host string
	Port int
}

// Route says where a domain's mail goes and under which TLS policy.
type Route struct {
	// Domain is the recipient domain: the MX lookup name, and a name a certificate may
	// carry under RequireVerifiedTLS.
	Domain string
	// Hosts, when set, are tried in order instead of the domain's MX hosts (a managed
	// domain's inbound server, or a smarthost).
	Hosts  []Target
	Policy tlspolicy.Policy
}

// Request is one message for the recipients of one domain.
type Request struct {
	Route      Route
	Sender     string
	Recipients []string
	// Body is the raw message; it is read from the start for each host tried.
	Body io.ReadSeeker
	Size int64
}

// Close ends idle sessions. Deliveries in progress are not interrupted.
func (cl *Client) Close() error {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil
	}
	cl.closed = true
	idle := cl.idle
	cl.idle = map[poolKey][]*session{}
	cl.mu.Unlock()
	close(cl.stop)
	<-cl.done
	for _, ss := range idle {
		for _, s := range ss {
			_ = s.c.Quit()
			s.close()
		}
	}
	return nil
}

// Deliver makes one attempt to deliver req: it tries the route's hosts (or the
// domain's MX hosts) in order until one answers the transaction, and reports each
// recipient's outcome. It never returns an error: failures are outcomes.
func (cl *Client) Deliver(ctx context.Context, req Request) Result {
	res := Result{Recipients: make([]RecipientResult, len(req.Recipients))}
	setAll := func(r RecipientResult) {
		for i, a := range req.Recipients {
			r.Address = a
			res.Recipients[i] = r
		}
	}
	targets := req.Route.Hosts
	if len(targets) == 0 {
		hosts, err := cl.opts.Resolver.LookupMX(ctx, req.Route.Domain)
		if err != nil {
			setAll(fromResolveError(err))
			return res
		}
		for _, h := range hosts {
			targets = append(targets, Target{Host: h.Name})
		}
	}
	var last error = &hostError{status: "4.4.1", reason: "no host could be reached"}
	tried := 0
	for _, t := range targets {
		addrs, err := cl.opts.Resolver.LookupIP(ctx, t.Host)
		if err != nil {
			last = err
			continue
		}
		for _, ip := range addrs {
			if tried >= cl.opts.MaxAddresses || ctx.Err() != nil {
				break
			}
			tried++
			key := cl.keyFor(t, ip, req.Route)
			done, err := cl.attempt(ctx, key, req, &res)
			if done {
				return res
			}
			last = err
			cl.log.Debug("delivery: host failed, trying the next", "host", t.Host, "addr", key.addr, "err", err)
		}
	}
	setAll(fromResolveError(last))
	return res
}

func (cl *Client) keyFor(t Target, ip netip.Addr, r Route) poolKey {
	port := t.Port
	if p, ok := cl.opts.PortOverrides[t.Host]; ok {
		port = p
	}
	if port == 0 {
		port = cl.opts.Port
	}
	return poolKey{
		addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), host: t.Host, domain: r.Domain,
		mode: r.Policy.Mode, minVersion: r.Policy.MinVersion, roots: r.Policy.Roots,
	}
}

// fromResolveError makes an outcome of a failure that reached no transaction.
func fromResolveError(err error) RecipientResult {
	var me *mx.Error
	if errors.As(err, &me) {
		o := Failed
		if me.Temporary {
			o = Deferred
		}
		return RecipientResult{Outcome: o, Status: me.Status, Reason: me.Reason + " (" + me.Name + ")"}
	}
	var he *hostError
	if errors.As(err, &he) {
		// A host that refused at connect or EHLO lets the others try later; even a
		// 5xx greeting is not final (Postfix smtp_skip_5xx_greeting).
		status := he.status
		if len(status) > 0 && status[0] != '4' {
			status = "4" + status[1:]
		}
		return RecipientResult{Outcome: Deferred, Status: status, Reply: he.reply, Reason: he.reason}
	}
	return RecipientResult{Outcome: Deferred, Status: "4.4.1", Reason: err.Error()}
}

// attempt runs the transaction on one address. done is false when the host could not
// take it and the next one should be tried; res is then untouched.
func (cl *Client) attempt(ctx context.Context, key poolKey, req Request, res *Result) (done bool, err error) {
	for {
		s, reused := cl.get(key)
		if s == nil {
			s, err = cl.open(ctx, key, req.Route.Policy)
			if err != nil {
				return false, err
			}
		}
		done, retry, err := cl.transact(ctx, s, req, res)
		if retry && reused {
			continue // a pooled session went stale; open a fresh one
		}
		return done, err
	}
}

// transact runs MAIL, RCPT for every recipient, and DATA on s. retry is set when the
// session failed before any command got a reply, which on a pooled session means it
// had gone stale.
func (cl *Client) transact(ctx context.Context, s *session, req Request, res *Result) (done, retry bool, err error) {
	stop := context.AfterFunc(ctx, func() { s.close() })
	defer stop()
	start := cl.now()
	c := s.c
	opts := &smtp.MailOptions{Size: req.Size}
	if !isASCII(req.Sender) || slices.ContainsFunc(req.Recipients, func(a string) bool { return !isASCII(a) }) {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			for i, a := range req.Recipients {
				res.Recipients[i] = RecipientResult{Address: a, Outcome: Failed, Status: "5.6.7",
					Reason: s.host + " does not support SMTPUTF8, which the addresses need"}
			}
			cl.recordTLS(s, res)
			cl.put(s)
			return true, false, nil
		}
		opts.UTF8 = true
	}
	if err := c.Mail(req.Sender, opts); err != nil {
		code, _, _, ok := replyOf(err)
		if !ok || code == 421 {
			// An I/O error or 421 (closing) before anything happened: on a pooled
			// session it only means the server dropped it while idle.
			s.close()
			return false, true, hostErrorOf(s.host, "MAIL FROM", err)
		}
		out := classify("", err)
		for i, a := range req.Recipients {
			out.Address = a
			res.Recipients[i] = out
		}
		cl.finish(s, res, true)
		return true, false, nil
	}
	var accepted []int
	for i, a := range req.Recipients {
		if err := c.Rcpt(a, nil); err != nil {
			if _, _, _, ok := replyOf(err); !ok {
				s.close()
				return false, false, hostErrorOf(s.host, "RCPT TO", err)
			}
			res.Recipients[i] = classify(a, err)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		cl.finish(s, res, true)
		return true, false, nil
	}
	setAccepted := func(r RecipientResult) {
		for _, i := range accepted {
			r.Address = req.Recipients[i]
			res.Recipients[i] = r
		}
	}
	w, err := c.Data()
	if err != nil {
		if _, _, _, ok := replyOf(err); !ok {
			s.close()
			return false, false, hostErrorOf(s.host, "DATA", err)
		}
		setAccepted(classify("", err))
		cl.finish(s, res, true)
		return true, false, nil
	}
	if _, err := req.Body.Seek(0, io.SeekStart); err != nil {
		s.close()
		setAccepted(RecipientResult{Outcome: Deferred, Status: "4.3.0", Reason: "reading the queued message failed"})
		return true, false, nil
	}
	if _, err := io.Copy(w, req.Body); err != nil {
		// Without the final dot nothing was delivered; another host may do better.
		s.close()
		return false, false, hostErrorOf(s.host, "message transfer", err)
	}
	resp, err := w.CloseWithResponse()
	cl.metrics.TransactionSeconds.Observe(cl.now().Sub(start).Seconds())
	switch {
	case err == nil:
		reply := "250 " + resp.StatusText
		setAccepted(RecipientResult{Outcome: Delivered, Status: "2.0.0", Reply: reply})
		cl.finish(s, res, false)
	default:
		if _, _, _, ok := replyOf(err); !ok {
			// The remote may have the message already; a retry risks a duplicate.
			s.close()
			setAccepted(RecipientResult{Outcome: Deferred, Status: "4.4.2", Reason: fmt.Sprintf("connection to %s lost after the message was sent", s.host)})
			cl.recordTLS(s, res)
			return true, false, nil
		}
		setAccepted(classify("", err))
		cl.finish(s, res, false)
	}
	return true, false, nil
}

// finish records the session's TLS facts in res and returns the session to the pool,
// after RSET when the transaction was abandoned before the final dot.
func (cl *Client) finish(s *session, res *Result, reset bool) {
	cl.recordTLS(s, res)
	if reset {
		if err := s.c.Reset(); err != nil {
			s.close()
			return
		}
	}
	cl.put(s)
}

func (cl *Client) recordTLS(s *session, res *Result) {
	res.RemoteMTA, res.TLS = s.host, s.tls
	verified := "false"
	if s.tls.Verified {
		verified = "true"
	}
	cl.metrics.TLS.WithLabelValues(s.key.domain, s.tls.VersionName(), s.tls.CipherName(), verified).Inc()
}

// get takes an idle session for key, if a fresh enough one waits.
func (cl *Client) get(key poolKey) (*session, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	now := cl.now()
	for ss := cl.idle[key]; len(ss) > 0; ss = cl.idle[key] {
		s := ss[len(ss)-1]
		cl.idle[key] = ss[:len(ss)-1]
		if len(cl.idle[key]) == 0 {
			delete(cl.idle, key)
		}
		if now.Sub(s.idle) > cl.opts.IdleTimeout || now.Sub(s.created) > cl.opts.MaxSessionAge {
			go s.close()
			continue
		}
		s.uses++
		cl.metrics.Connections.WithLabelValues("reused").Inc()
		return s, true
	}
	return nil, false
}

func (cl *Client) put(s *session) {
	now := cl.now()
	cl.mu.Lock()
	if cl.closed || len(cl.idle[s.key]) >= cl.opts.MaxIdlePerHost ||
		now.Sub(s.created) > cl.opts.MaxSessionAge || s.uses >= defaultMaxSessionUses {
		cl.mu.Unlock()
		go func() { _ = s.c.Quit(); s.close() }()
		return
	}
	s.idle = now
	cl.idle[s.key] = append(cl.idle[s.key], s)
	cl.mu.Unlock()
}

// janitor closes sessions that idled too long, so the remote ends are not left hanging.
func (cl *Client) janitor() {
	defer close(cl.done)
	t := time.NewTicker(defaultJanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
		}
		now := cl.now()
		var stale []*session
		cl.mu.Lock()
		for k, ss := range cl.idle {
			keep := ss[:0]
			for _, s := range ss {
				if now.Sub(s.idle) > cl.opts.IdleTimeout {
					stale = append(stale, s)
				} else {
					keep = append(keep, s)
				}
			}
			if len(keep) == 0 {
				delete(cl.idle, k)
			} else {
				cl.idle[k] = keep
			}
		}
		cl.mu.Unlock()
		for _, s := range stale {
			_ = s.c.Quit()
			s.close()
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
