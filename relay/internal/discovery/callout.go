package discovery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/postwarden/postwarden/relay/internal/tlspolicy"
)

// Outcome is what a verification callout learned.
type Outcome int

const (
	// TempFailed: no answer about the address (timeout, 4xx, a refused connection or
	// null sender, missing TLS); the recipient is deferred.
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

// Prober runs verification callouts: connect, EHLO, STARTTLS as the domain's Inbound
// TLS policy asks, MAIL FROM:<>, RCPT TO:<address>, QUIT. It never sends DATA.
type Prober struct {
	// HELOName is the name sent in EHLO.
	HELOName string
	// Dial opens connections (nil: a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSPolicy returns the Inbound TLS policy of a managed domain (nil: opportunistic).
	TLSPolicy func(domain string) tlspolicy.Policy
	// CommandTimeout bounds each reply, the connect and the TLS handshake
	// (DefaultCommandTimeout when zero). The caller's context bounds the whole callout.
	CommandTimeout time.Duration
}

// DefaultCommandTimeout is short next to RFC 5321's 5 minutes: a sending MTA is
// waiting for our RCPT reply meanwhile, so a slow server defers the recipient instead.
const DefaultCommandTimeout = 10 * time.Second

// errPlaintextRetry marks a failed opportunistic handshake, retried without TLS.
var errPlaintextRetry = errors.New("opportunistic TLS handshake failed")

// Probe asks host:port whether it accepts mail for address of domain.
func (p *Prober) Probe(ctx context.Context, host string, port int, domain, address string) Result {
	pol := tlspolicy.Default
	if p.TLSPolicy != nil {
		pol = p.TLSPolicy(domain)
	}
	res := p.probe(ctx, host, port, domain, address, pol, true)
	if errors.Is(res.Err, errPlaintextRetry) {
		// Opportunistic TLS falls back to plaintext, as in delivery.
		res = p.probe(ctx, host, port, domain, address, pol, false)
	}
	return res
}

func (p *Prober) probe(ctx context.Context, host string, port int, domain, address string, pol tlspolicy.Policy, useTLS bool) Result {
	timeout := p.CommandTimeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	dial := p.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	conn, err := dial(dctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	cancel()
	if err != nil {
		return Result{Err: fmt.Errorf("connecting to %s:%d: %w", host, port, err)}
	}
	// Closing the connection interrupts whatever read or write is pending.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer func() {
		stop()
		_ = conn.Close()
	}()
	c := &client{conn: conn, timeout: timeout, ctx: ctx}
	c.text = textproto.NewConn(conn)

	if code, msg, err := c.read(); err != nil || code != 220 {
		return c.tempfail("greeting", code, msg, err)
	}
	ext, code, msg, err := c.hello(p.helo())
	if err != nil {
		return c.tempfail("EHLO", code, msg, err)
	}
	_, offered := ext["STARTTLS"]
	switch {
	case offered && useTLS:
		if code, msg, err := c.cmd("STARTTLS"); err != nil || code != 220 {
			return c.tempfail("STARTTLS", code, msg, err)
		}
		cfg, _ := pol.ClientConfig(host, domain)
		tc := tls.Client(conn, cfg)
		_ = tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			if pol.Mode == tlspolicy.Opportunistic {
				return Result{Err: fmt.Errorf("%w: %w", errPlaintextRetry, err)}
			}
			return Result{Err: fmt.Errorf("tls handshake with %s: %w", host, err)}
		}
		c.conn, c.tls = tc, true
		c.text = textproto.NewConn(tc)
		if _, code, msg, err = c.hello(p.helo()); err != nil {
			return c.tempfail("EHLO after STARTTLS", code, msg, err)
		}
	case pol.Mode != tlspolicy.Opportunistic && !c.tls:
		return Result{Err: fmt.Errorf("%s does not offer STARTTLS and policy %s requires TLS", host, pol.Mode)}
	}
	// A refused null sender says nothing about the address: defer.
	if code, msg, err := c.cmd("MAIL FROM:<>"); err != nil || code/100 != 2 {
		return c.tempfail("MAIL FROM", code, msg, err)
	}
	code, msg, err = c.cmd("RCPT TO:<%s>", address)
	res := Result{Code: code, Reply: msg, TLS: c.tls, Err: err}
	switch {
	case err != nil:
		res.Outcome = TempFailed
	case code/100 == 2:
		res.Outcome = Accepted
	case code/100 == 5:
		res.Outcome = Refused
	default:
		res.Outcome = TempFailed
	}
	_, _, _ = c.cmd("QUIT")
	return res
}

func (p *Prober) helo() string {
	if p.HELOName != "" {
		return p.HELOName
	}
	return "localhost"
}

// client is the few commands a callout needs, over textproto.
type client struct {
	ctx     context.Context
	conn    net.Conn
	text    *textproto.Conn
	timeout time.Duration
	tls     bool
}

// read reads one (possibly multi-line) reply. A malformed reply is an error; an SMTP
// error code is not.
func (c *client) read() (int, string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	code, msg, err := c.text.ReadResponse(0)
	var perr *textproto.Error
	if errors.As(err, &perr) {
		return perr.Code, perr.Msg, nil
	}
	if err != nil && c.ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", c.ctx.Err(), err)
	}
	return code, msg, err
}

func (c *client) cmd(format string, args ...any) (int, string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if err := c.text.PrintfLine(format, args...); err != nil {
		return 0, "", err
	}
	return c.read()
}

// hello sends EHLO, falling back to HELO when the server does not know EHLO, and
// returns the extensions offered.
func (c *client) hello(name string) (map[string]string, int, string, error) {
	code, msg, err := c.cmd("EHLO %s", name)
	if err == nil && (code == 500 || code == 502) {
		code, msg, err = c.cmd("HELO %s", name)
		if err == nil && code == 250 {
			return map[string]string{}, code, msg, nil
		}
	}
	if err != nil || code != 250 {
		if err == nil {
			err = fmt.Errorf("unexpected reply %d", code)
		}
		return nil, code, msg, err
	}
	ext := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(msg))
	sc.Scan() // the greeting line
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, code, msg, nil
}

func (c *client) tempfail(stage string, code int, msg string, err error) Result {
	if err == nil {
		err = fmt.Errorf("%s: unexpected reply %d", stage, code)
	} else {
		err = fmt.Errorf("%s: %w", stage, err)
	}
	return Result{Outcome: TempFailed, Code: code, Reply: msg, Err: err, TLS: c.tls}
}
