package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// Outcome is what a verification callout learned.
type Outcome int

const (
	// TempFailed: no answer about the address (timeout, 4xx, a refused connection or
	// null sender, missing TLS, an address that is not public); the recipient is
	// deferred.
	TempFailed Outcome = iota
	// Accepted: RCPT TO got 2xx.
	Accepted
	// Refused: RCPT TO got 5xx.
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Refused:
		return "refused"
	}
	return "tempfailed"
}

// Result is the outcome of one callout, with the reply that decided it, for logs.
type Result struct {
	Outcome Outcome
	// Code and Reply are the deciding SMTP reply; Code is 0 when there was none.
	Code  int
	Reply string
	// Err says why a callout tempfailed without a reply.
	Err error
	// TLS reports whether the RCPT was sent over TLS.
	TLS bool
}

// Prober runs verification callouts over an outbound session (connect, EHLO, STARTTLS
// as the domain's Inbound TLS policy asks), then MAIL FROM:<>, RCPT TO:<address>, QUIT.
// It never sends DATA.
type Prober struct {
	// HELOName is the name sent in EHLO.
	HELOName string
	// Resolver finds the addresses of a named server (nil: the system resolver); the
	// relay passes delivery's, so callouts ask the same DNS servers (--dns-servers).
	Resolver outbound.Resolver
	// Dial opens connections (nil: a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSPolicy returns the Inbound TLS policy of a managed domain (nil: opportunistic).
	TLSPolicy func(domain string) tlspolicy.Policy
	// CommandTimeout bounds each reply, the connect and the TLS handshake
	// (DefaultCommandTimeout when zero). The caller's context bounds the whole callout.
	CommandTimeout time.Duration
	// AllowedNetworks may be called out to although they are not public (the relay's
	// --outbound-allowed-networks); DeniedNetworks are refused besides the special
	// ranges. See outbound.Options.
	AllowedNetworks, DeniedNetworks []netip.Prefix
}

// DefaultCommandTimeout is short next to RFC 5321's 5 minutes: a sending MTA is
// waiting for our RCPT reply meanwhile, so a slow server defers the recipient instead.
const DefaultCommandTimeout = 10 * time.Second

// Probe asks host:port whether it accepts mail for address of domain.
func (p *Prober) Probe(ctx context.Context, host string, port int, domain, address string) Result {
	pol := tlspolicy.Default
	if p.TLSPolicy != nil {
		pol = p.TLSPolicy(domain)
	}
	timeout := p.CommandTimeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	helo := p.HELOName
	if helo == "" {
		helo = "localhost"
	}
	d := outbound.New(outbound.Options{
		HELOName: helo, Resolver: p.Resolver, Dial: p.Dial,
		ConnectTimeout: timeout, CommandTimeout: timeout, DataTimeout: timeout,
		AllowedNetworks: p.AllowedNetworks, DeniedNetworks: p.DeniedNetworks,
	})
	c, err := d.Dial(ctx, outbound.Host{Name: host, Port: port}, outbound.Params{Policy: pol, Domain: domain})
	if err != nil {
		res := Result{Outcome: TempFailed, Err: err}
		var oe *outbound.Error
		if errors.As(err, &oe) {
			res.Code, res.Reply = oe.Code, oe.Reply
		}
		return res
	}
	// Closing the connection interrupts whatever read or write is pending.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer func() {
		stop()
		_ = c.Close()
	}()
	tls := c.TLS.Encrypted()
	// A refused null sender says nothing about the address: defer.
	if err := c.Mail("", nil); err != nil {
		return tempfail(ctx, "MAIL FROM", err, tls)
	}
	err = c.Rcpt(address, nil)
	code, reply := replyOf(err)
	res := Result{Code: code, Reply: reply, TLS: tls}
	switch {
	case err == nil:
		res.Outcome, res.Code = Accepted, 250
	case code/100 == 5:
		res.Outcome = Refused
	case code != 0:
		res.Outcome = TempFailed
	default:
		return tempfail(ctx, "RCPT TO", err, tls) // the connection failed: no QUIT
	}
	_ = c.Quit()
	return res
}

// replyOf returns the code and line of a reply error ("550 5.1.1 no such user"), or
// zeros for an I/O error.
func replyOf(err error) (int, string) {
	code, _, reply, _ := outbound.ReplyOf(err)
	return code, reply
}

func tempfail(ctx context.Context, stage string, err error, tls bool) Result {
	code, reply := replyOf(err)
	if code == 0 && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return Result{Outcome: TempFailed, Code: code, Reply: reply, TLS: tls, Err: fmt.Errorf("%s: %w", stage, err)}
}
