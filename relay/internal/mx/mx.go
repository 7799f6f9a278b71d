// Package mx resolves a destination domain to the ordered list of hosts to try, as RFC
// 5321 section 5 describes: MX records by preference (equal preferences shuffled), the
// domain itself when it has no MX (implicit MX), and a refusal for a null MX (RFC 7505).
// It talks DNS itself, through github.com/miekg/dns, so the resolver's address is
// configurable and tests can point it at a server on loopback.
package mx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Error is a resolution failure with the enhanced status code a DSN or a retry decision
// needs.
type Error struct {
	Name string
	// Temporary failures (SERVFAIL, timeouts) are retried; others are final.
	Temporary bool
	// Status is the RFC 3463 enhanced status code, such as "5.1.10".
	Status string
	// Reason is a short text fit for a bounce.
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Name, e.Reason, e.Err)
	}
	return e.Name + ": " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// Host is one mail exchanger.
type Host struct {
	// Name is the host name without a trailing dot.
	Name       string
	Preference uint16
}

// Resolver looks up MX and address records.
type Resolver struct {
	servers []string
	timeout time.Duration
	cache   *cache // nil unless EnableCache was called
}

// DefaultTimeout bounds each DNS query.
const DefaultTimeout = 5 * time.Second

// New returns a resolver that asks servers (host:port) in turn. With no servers it uses
// the nameservers of /etc/resolv.conf. A zero timeout means DefaultTimeout.
func New(servers []string, timeout time.Duration) (*Resolver, error) {
	if len(servers) == 0 {
		cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("reading resolver configuration: %w", err)
		}
		for _, s := range cfg.Servers {
			servers = append(servers, net.JoinHostPort(s, cfg.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("no nameserver configured in /etc/resolv.conf")
		}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Resolver{servers: servers, timeout: timeout}, nil
}

// LookupMX returns the hosts to try for domain, best first.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]Host, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var hosts []Host
	for _, rr := range resp.Answer {
		m, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		if m.Mx == "." {
			// RFC 7505: the domain says it accepts no mail at all.
			return nil, &Error{Name: domain, Status: "5.1.10", Reason: "domain does not accept mail (null MX)"}
		}
		hosts = append(hosts, Host{Name: strings.TrimSuffix(strings.ToLower(m.Mx), "."), Preference: m.Preference})
	}
	if len(hosts) == 0 {
		// RFC 5321 5.1: no MX means the domain itself, if it has an address.
		if _, err := r.LookupIP(ctx, domain); err != nil {
			var e *Error
			if errors.As(err, &e) && !e.Temporary {
				return nil, &Error{Name: domain, Status: "5.1.2", Reason: "domain has no MX or address records"}
			}
			return nil, err
		}
		return []Host{{Name: domain}}, nil
	}
	Order(hosts)
	return hosts, nil
}

// Order sorts hosts by preference and shuffles each run of equal preference, so load
// spreads across equal MXes as RFC 5321 5.1 asks.
func Order(hosts []Host) {
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b Host) int { return int(a.Preference) - int(b.Preference) })
}

// LookupIP returns the addresses of host, IPv4 first. An IP literal is returned as is.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	var addrs []netip.Addr
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					addrs = append(addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					addrs = append(addrs, a)
				}
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	for _, err := range errs {
		var e *Error
		if errors.As(err, &e) && e.Temporary {
			return nil, err
		}
	}
	return nil, &Error{Name: host, Status: "5.4.4", Reason: "host has no address records", Err: errors.Join(errs...)}
}

// query asks each server in turn until one answers, retrying over TCP when the UDP
// answer is truncated, and maps the rcode to an Error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if resp := r.cache.get(name, qtype); resp != nil {
		return rcodeResult(name, resp)
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	req.RecursionDesired = true
	req.SetEdns0(1232, false)
	var lastErr error
	for _, server := range r.servers {
		qctx, cancel := context.WithTimeout(ctx, r.timeout)
		resp, _, err := (&dns.Client{Net: "udp", Timeout: r.timeout}).ExchangeContext(qctx, req, server)
		if err == nil && resp.Truncated {
			resp, _, err = (&dns.Client{Net: "tcp", Timeout: r.timeout}).ExchangeContext(qctx, req, server)
		}
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			r.cache.put(name, qtype, resp)
			return rcodeResult(name, resp)
		default:
			lastErr = fmt.Errorf("%s from %s", dns.RcodeToString[resp.Rcode], server)
		}
	}
	if ctx.Err() != nil {
		lastErr = ctx.Err()
	}
	return nil, &Error{Name: name, Temporary: true, Status: "4.4.3", Reason: "DNS lookup failed", Err: lastErr}
}

// rcodeResult maps a definitive answer (NOERROR or NXDOMAIN) to the query's result.
func rcodeResult(name string, resp *dns.Msg) (*dns.Msg, error) {
	if resp.Rcode == dns.RcodeNameError {
		return nil, &Error{Name: name, Status: "5.1.2", Reason: "domain does not exist"}
	}
	return resp, nil
}
