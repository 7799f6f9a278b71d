package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// Defaults in the spirit of Postfix (smtp_connect_timeout 30 s) and RFC 5321 4.5.3.2
// (5 minutes per command, 10 minutes for the reply to the final dot).
const (
	DefaultPort            = outbound.DefaultPort
	DefaultConnectTimeout  = outbound.DefaultConnectTimeout
	DefaultCommandTimeout  = outbound.DefaultCommandTimeout
	DefaultDataTimeout     = outbound.DefaultDataTimeout
	DefaultIdleTimeout     = 10 * time.Second
	DefaultMaxSessionAge   = 5 * time.Minute
	DefaultMaxIdlePerHost  = 2
	DefaultMaxAddresses    = outbound.DefaultMaxAddresses
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
	// it may be reused at all; MaxIdlePerHost how many wait per destination. A Runner
	// raises MaxIdlePerHost to its PerDestination: with fewer, sessions that end
	// together are closed and the next deliveries open new ones.
	IdleTimeout, MaxSessionAge time.Duration
	MaxIdlePerHost             int
	// MaxAddresses bounds the addresses tried for one delivery (Postfix
	// smtp_mx_address_limit).
	MaxAddresses int
	// AllowedNetworks may be delivered to although they are not public (the relay's
	// --outbound-allowed-networks); DeniedNetworks are refused besides the special
	// ranges. See outbound.Options.
	AllowedNetworks, DeniedNetworks []netip.Prefix
	Metrics                         *Metrics
	Logger                          *slog.Logger

	// noPipelining, for tests, runs every transaction one command at a time, as for a
	// server that does not offer PIPELINING.
	noPipelining bool
}

// Client delivers messages over SMTP and keeps idle sessions for reuse. It is safe for
// concurrent use.
type Client struct {
	opts    ClientOptions
	out     *outbound.Dialer
	logins  loginFailures
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
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("delivery: MX port %d is out of range", opts.Port)
	}
	// The timeouts and MaxAddresses take their defaults in outbound.New.
	opts.Port = cmp.Or(opts.Port, DefaultPort)
	opts.IdleTimeout = cmp.Or(opts.IdleTimeout, DefaultIdleTimeout)
	opts.MaxSessionAge = cmp.Or(opts.MaxSessionAge, DefaultMaxSessionAge)
	opts.MaxIdlePerHost = cmp.Or(opts.MaxIdlePerHost, DefaultMaxIdlePerHost)
	if opts.Metrics == nil {
		opts.Metrics, _ = NewMetrics(nil)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := opts.Metrics
	out := outbound.New(outbound.Options{
		HELOName: opts.HELOName, Resolver: opts.Resolver, Dial: opts.Dial,
		ConnectTimeout: opts.ConnectTimeout, CommandTimeout: opts.CommandTimeout, DataTimeout: opts.DataTimeout,
		MaxAddresses: opts.MaxAddresses, AllowedNetworks: opts.AllowedNetworks, DeniedNetworks: opts.DeniedNetworks,
		Hooks: outbound.Hooks{
			Connected: func(err error) {
				if err != nil {
					m.Connections.WithLabelValues("failed").Inc()
				} else {
					m.Connections.WithLabelValues("opened").Inc()
				}
			},
			PlaintextFallback: func(p tlspolicy.Policy) { m.TLSFallbacks.WithLabelValues(policyLabel(p.Source)).Inc() },
		},
	})
	cl := &Client{
		opts: opts, out: out, metrics: m, log: opts.Logger, now: time.Now,
		idle: make(map[poolKey][]*session), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go cl.janitor()
	return cl, nil
}

// keepIdle raises the idle sessions kept per destination to at least n.
func (cl *Client) keepIdle(n int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.opts.MaxIdlePerHost = max(cl.opts.MaxIdlePerHost, n)
}

// Target is one host to try, with its port (0: the client's port).
type Target struct {
	Host string
	Port int
	// AdminNamed marks the smarthost, which an admin configured: the non-public
	// address guard does not apply to it (see outbound.Host).
	AdminNamed bool
}

// Route says where a domain's mail goes and under which TLS policy.
type Route struct {
	// Domain is the recipient domain: the MX lookup name, and a name a certificate may
	// carry under RequireVerifiedTLS.
	Domain string
	// Hosts, when set, are tried in order instead of the domain's MX hosts (a managed
	// domain's inbound server, its outbound route, or the relay's smarthost).
	Hosts  []Target
	Policy tlspolicy.Policy
	// AuthSecret, when set, names the credentials the hop logs in with
	// (snapshot.Endpoint.AuthSecret); Auth holds them, nil when the relay does not have
	// them, and then the recipients wait rather than go out without the login.
	AuthSecret string
	Auth       *outbound.Credentials
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
	if req.Route.AuthSecret != "" && req.Route.Auth == nil {
		r := RecipientResult{Outcome: Deferred, Status: "4.7.0", Reason: fmt.Sprintf(
			"the credentials %s that the route to %s logs in with are not loaded (is the MailDomain's Secret missing?)",
			req.Route.AuthSecret, hostNames(req.Route.Hosts))}
		cl.logins.note(req.Route, errors.New(r.Reason), cl.now())
		setAll(r)
		return res
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
	hosts := make([]outbound.Host, len(targets))
	for i, t := range targets {
		hosts[i] = outbound.Host{Name: t.Host, Port: cl.portOf(t), AdminNamed: t.AdminNamed}
	}
	var last error = &outbound.Error{Status: "4.4.1", Reason: "no host could be reached"}
	for ep, err := range cl.out.Endpoints(ctx, hosts...) {
		if err != nil {
			last = err
			continue
		}
		key := keyFor(ep, req.Route)
		done, err := cl.attempt(ctx, key, req, &res)
		if done {
			cl.logins.note(req.Route, nil, cl.now()) // logged in, whatever the recipients' fate
			return res
		}
		if isLoginFailure(err) {
			cl.logins.note(req.Route, err, cl.now())
		}
		last = err
		cl.log.Debug("delivery: host failed, trying the next", "host", ep.Host, "addr", ep.Addr.String(), "err", err)
	}
	setAll(fromResolveError(last))
	return res
}

// portOf is t's port: its own, a test's override, or the client's.
func (cl *Client) portOf(t Target) int {
	port := t.Port
	if p, ok := cl.opts.PortOverrides[t.Host]; ok {
		port = p
	}
	if port == 0 {
		port = cl.opts.Port
	}
	return port
}

func keyFor(ep outbound.Endpoint, r Route) poolKey {
	return poolKey{
		ep: ep, domain: r.Domain, policy: r.Policy.Source, login: loginOf(r),
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
	var he *outbound.Error
	if errors.As(err, &he) {
		// A host that refused at connect or EHLO lets the others try later; even a
		// 5xx greeting is not final (Postfix smtp_skip_5xx_greeting). So does an
		// address the guard refused (outbound.RefusedStatus): an admin may allow it.
		status := he.Status
		if len(status) > 0 && status[0] != '4' {
			status = "4" + status[1:]
		}
		return RecipientResult{Outcome: Deferred, Status: status, Reply: he.Reply, Reason: he.Reason}
	}
	return RecipientResult{Outcome: Deferred, Status: "4.4.1", Reason: err.Error()}
}
