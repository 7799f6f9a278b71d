package outbound

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// Params say how to open one session.
type Params struct {
	// Policy is the TLS requirement.
	Policy tlspolicy.Policy
	// Domain, when set, is the recipient domain: a name a certificate may carry besides
	// the host's under RequireVerifiedTLS.
	Domain string
	// ServerName, when set, replaces the endpoint's host as the name sent in SNI and
	// checked on the certificate: for a server dialed by another name, such as the
	// relay's Service, whose certificate carries the relay's public hostname.
	ServerName string
	// Auth, when set, authenticates after TLS; never over plaintext.
	Auth *Credentials
}

// Conn is a session ready for MAIL FROM. Close it, or Quit.
type Conn struct {
	*smtp.Client
	Endpoint Endpoint
	TLS      TLSInfo
	// Raw is the connection under Client (over TLS when TLS is in use), for a caller
	// that pipelines a transaction (RFC 2920) itself, which go-smtp's client cannot.
	// Client has nothing buffered from it between commands: a server sends no reply
	// that was not asked for.
	Raw net.Conn
}

// Open connects to ep and prepares a session as p asks: STARTTLS when offered; for
// Opportunistic a failed STARTTLS means connecting again in plaintext, while the
// Require modes never go on in plaintext; then AUTH when p has credentials. Its errors
// are *Error.
func (d *Dialer) Open(ctx context.Context, ep Endpoint, p Params) (*Conn, error) {
	if !ep.AdminNamed {
		if why := d.guard.refuse(ep.Addr.Addr()); why != "" {
			return nil, refusal(ep.Host, ep.Addr.Addr(), why)
		}
	}
	conn, ext, err := d.greet(ctx, ep)
	if err != nil {
		return nil, err
	}
	var info TLSInfo
	_, offered := ext["STARTTLS"]
	switch {
	case offered:
		cfg, check := p.Policy.ClientConfig(cmp.Or(p.ServerName, ep.Host), p.Domain)
		tconn, terr := d.startTLS(ctx, conn, cfg)
		if terr == nil {
			st := tconn.ConnectionState()
			info = TLSInfo{Version: st.Version, Cipher: st.CipherSuite, Verified: check.Verified}
			if check.Err != nil {
				info.VerifyError = check.Err.Error()
			}
			conn = tconn
			break
		}
		_ = conn.Close()
		if p.Policy.Mode != tlspolicy.Opportunistic {
			return nil, &Error{Status: "4.7.10", Reason: fmt.Sprintf("TLS with %s failed: %v", ep.Host, terr)}
		}
		// Opportunistic: the same address again, without STARTTLS.
		if h := d.opts.Hooks.PlaintextFallback; h != nil {
			h(p.Policy)
		}
		if conn, _, err = d.greet(ctx, ep); err != nil {
			return nil, err
		}
		info.PlaintextFallback = true
	case p.Policy.Mode != tlspolicy.Opportunistic:
		_ = conn.Close()
		return nil, &Error{Status: "4.7.10", Reason: fmt.Sprintf("TLS required but %s does not offer STARTTLS", ep.Host)}
	}
	// go-smtp's client cannot send STARTTLS after an EHLO with our own name, so the
	// steps above are done by hand and the client takes over here, reading a replayed
	// greeting and saying EHLO again (over TLS, RFC 3207 requires it).
	raw := &replayConn{Conn: conn, pending: []byte("220 resumed\r\n")}
	c := smtp.NewClient(raw)
	c.CommandTimeout = d.opts.CommandTimeout
	c.SubmissionTimeout = d.opts.DataTimeout
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	err = c.Hello(d.opts.HELOName)
	if err != nil {
		err = StageError(ep.Host, "EHLO", err)
	} else if p.Auth != nil {
		err = authenticate(c, ep.Host, info, p.Auth)
	}
	if !stop() && err == nil {
		// The context ended and closed the connection after the last reply.
		err = &Error{Status: "4.4.2", Reason: fmt.Sprintf("%s: %v", ep.Host, ctx.Err())}
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &Conn{Client: c, Endpoint: ep, TLS: info, Raw: raw}, nil
}

// dial connects to ep within the connect timeout. The default dialer checks the guard
// once more on the socket's own address, the exact one connected to.
func (d *Dialer) dial(ctx context.Context, ep Endpoint) (net.Conn, error) {
	dial := d.opts.Dial
	if dial == nil {
		nd := &net.Dialer{}
		if !ep.AdminNamed {
			nd.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return err
				}
				if why := d.guard.refuse(ap.Addr()); why != "" {
					return refusal(ep.Host, ap.Addr(), why)
				}
				return nil
			}
		}
		dial = nd.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()
	conn, err := dial(dctx, "tcp", ep.Addr.String())
	if h := d.opts.Hooks.Connected; h != nil {
		h(err)
	}
	return conn, err
}

// greet connects and reads the greeting, then says EHLO and returns the extensions.
func (d *Dialer) greet(ctx context.Context, ep Endpoint) (net.Conn, map[string]string, error) {
	conn, err := d.dial(ctx, ep)
	if err != nil {
		var refused *Error
		if errors.As(err, &refused) {
			return nil, nil, refused
		}
		return nil, nil, &Error{Status: "4.4.1", Reason: fmt.Sprintf("connecting to %s [%s]: %v", ep.Host, ep.Addr, stripAddr(err))}
	}
	// The deadline is set before the cancellation hook, which must win over it.
	_ = conn.SetDeadline(time.Now().Add(d.opts.CommandTimeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer func() {
		if stop() {
			_ = conn.SetDeadline(time.Time{})
		}
	}()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		_ = conn.Close()
		return nil, nil, StageError(ep.Host, "greeting", protoErr(err))
	}
	id, err := tp.Cmd("EHLO %s", d.opts.HELOName)
	if err != nil {
		_ = conn.Close()
		return nil, nil, StageError(ep.Host, "EHLO", err)
	}
	tp.StartResponse(id)
	code, msg, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	if err != nil && (code == 500 || code == 502) {
		// An RFC 821 server: HELO, and no extensions (so no STARTTLS).
		msg = ""
		if id, err = tp.Cmd("HELO %s", d.opts.HELOName); err == nil {
			tp.StartResponse(id)
			_, _, err = tp.ReadResponse(250)
			tp.EndResponse(id)
		}
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, StageError(ep.Host, "EHLO", protoErr(err))
	}
	ext := map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	if tp.R.Buffered() > 0 {
		// Nothing may follow the EHLO reply unasked; treat it as a broken server.
		_ = conn.Close()
		return nil, nil, &Error{Status: "4.5.0", Reason: fmt.Sprintf("%s sent unexpected data after EHLO", ep.Host)}
	}
	return &bufConn{Conn: conn, r: tp.R}, ext, nil
}

// startTLS sends STARTTLS and runs the handshake.
func (d *Dialer) startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(d.opts.CommandTimeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	tp := textproto.NewConn(conn)
	id, err := tp.Cmd("STARTTLS")
	if err != nil {
		return nil, err
	}
	tp.StartResponse(id)
	_, _, err = tp.ReadResponse(220)
	tp.EndResponse(id)
	if err != nil {
		return nil, protoErr(err)
	}
	if tp.R.Buffered() > 0 {
		// Bytes before the handshake would be read as if they came over TLS.
		return nil, errors.New("server sent data after its STARTTLS reply")
	}
	tconn := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.opts.CommandTimeout)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return tconn, nil
}

// bufConn reads through the buffered reader used for the greeting, so no byte the
// server sent is lost when the session changes hands.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// replayConn hands go-smtp a greeting line before the real stream.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
