package outbound

import (
	"cmp"
	"context"
	"iter"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// Defaults in the spirit of Postfix (smtp_connect_timeout 30 s, smtp_mx_address_limit 5)
// and RFC 5321 4.5.3.2 (5 minutes per command, 10 minutes for the reply to the final dot).
const (
	DefaultPort           = 25
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
	DefaultMaxAddresses   = 5
)

// Resolver finds a host's addresses; the relay's DNS resolver (relay/internal/mx) is one.
type Resolver interface {
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// Hooks are told of connection events, for metrics. Either may be nil.
type Hooks struct {
	// Connected is called after each TCP connect, with its error (nil: connected).
	Connected func(err error)
	// PlaintextFallback is called when an opportunistic handshake failed and the
	// session is opened again in plaintext, with the policy that allowed it.
	PlaintextFallback func(p tlspolicy.Policy)
}

// Options configure a Dialer. Zero values take the defaults above.
type Options struct {
	// HELOName is the name sent in EHLO ("localhost" when empty).
	HELOName string
	// Resolver finds addresses; nil means the system resolver.
	Resolver Resolver
	// Dial opens TCP connections to an address ("192.0.2.1:25"); nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds the TCP connect; CommandTimeout each reply and the TLS
	// handshake; DataTimeout the reply to the final dot.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	// MaxAddresses bounds the addresses Endpoints yields, over all its hosts.
	MaxAddresses int
	// AllowedNetworks may be dialed although they are not public: the relay's
	// --outbound-allowed-networks. They win over DeniedNetworks.
	AllowedNetworks []netip.Prefix
	// DeniedNetworks are refused like the special-purpose ranges; the relay puts the
	// cluster's own networks here, for clusters that number pods from public ranges.
	DeniedNetworks []netip.Prefix
	Hooks          Hooks
}

// Dialer opens SMTP sessions. It holds no connections and is safe for concurrent use.
type Dialer struct {
	opts  Options
	guard guard
}

// New returns a Dialer for opts.
func New(opts Options) *Dialer {
	if opts.HELOName == "" {
		opts.HELOName = "localhost"
	}
	opts.ConnectTimeout = cmp.Or(opts.ConnectTimeout, DefaultConnectTimeout)
	opts.CommandTimeout = cmp.Or(opts.CommandTimeout, DefaultCommandTimeout)
	opts.DataTimeout = cmp.Or(opts.DataTimeout, DefaultDataTimeout)
	opts.MaxAddresses = cmp.Or(opts.MaxAddresses, DefaultMaxAddresses)
	return &Dialer{opts: opts, guard: newGuard(opts.AllowedNetworks, opts.DeniedNetworks)}
}

// Host is a server to try: a name or an IP literal, and its port (0: DefaultPort).
type Host struct {
	Name string
	Port int
	// AdminNamed marks a host an admin configured (the relay's --smarthost, the
	// operator's --report-relay) rather than one a tenant or DNS named (MX hosts, a
	// MailDomain's inboundDelivery): its addresses are not checked against the guard.
	// The guard keeps tenants from pointing the relay at internal services; the admin
	// runs those services and may well put the smarthost or the relay among them.
	AdminNamed bool
}

// Endpoint is one address of a host.
type Endpoint struct {
	// Host is the name the address is of, for messages and certificate checks.
	Host       string
	Addr       netip.AddrPort
	AdminNamed bool
}

// Endpoints resolves hosts in order and yields their addresses, at most MaxAddresses
// in all, and stops when ctx ends. A host that cannot be resolved yields its error (a
// Resolver's own, such as an *mx.Error) and the next host is tried.
func (d *Dialer) Endpoints(ctx context.Context, hosts ...Host) iter.Seq2[Endpoint, error] {
	return func(yield func(Endpoint, error) bool) {
		tried := 0
		for _, h := range hosts {
			if ctx.Err() != nil {
				return
			}
			addrs, err := d.lookup(ctx, h.Name)
			if err != nil {
				if !yield(Endpoint{}, err) {
					return
				}
				continue
			}
			port := h.Port
			if port <= 0 {
				port = DefaultPort
			}
			for _, a := range addrs {
				if tried >= d.opts.MaxAddresses || ctx.Err() != nil {
					return
				}
				tried++
				ep := Endpoint{Host: h.Name, Addr: netip.AddrPortFrom(a.Unmap(), uint16(port)), AdminNamed: h.AdminNamed}
				if !yield(ep, nil) {
					return
				}
			}
		}
	}
}

func (d *Dialer) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if d.opts.Resolver != nil {
		return d.opts.Resolver.LookupIP(ctx, host)
	}
	name := strings.TrimSuffix(host, ".")
	if a, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// Dial opens a session to the first address of h that takes one, trying at most
// MaxAddresses, and returns the last address's error when none did.
func (d *Dialer) Dial(ctx context.Context, h Host, p Params) (*Conn, error) {
	var last error
	for ep, err := range d.Endpoints(ctx, h) {
		if err == nil {
			var c *Conn
			if c, err = d.Open(ctx, ep, p); err == nil {
				return c, nil
			}
		}
		last = err
	}
	if last == nil {
		if last = ctx.Err(); last == nil {
			last = &Error{Status: "4.4.1", Reason: h.Name + " has no address to try"}
		}
	}
	return nil, last
}
