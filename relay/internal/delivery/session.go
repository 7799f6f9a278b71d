package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/tlspolicy"
)

// session is an SMTP connection ready for MAIL FROM.
type session struct {
	c       *smtp.Client
	key     poolKey
	host    string
	tls     TLSInfo
	created time.Time
	idle    time.Time // when it was last returned to the pool
	uses    int
}

// poolKey says which deliveries may share a session: same address, same MX name and
// recipient domain (names a certificate was checked against) and same TLS policy.
type poolKey struct {
	addr, host, domain string
	policy             string // the TLSDeliveryPolicy that applies, "" for the default
	mode               tlspolicy.Mode
	minVersion         uint16
	roots              *x509.CertPool
}

func (s *session) close() { _ = s.c.Close() }

// open dials addr (host's address) and prepares a session as policy asks:
// STARTTLS when offered; for Opportunistic a failed handshake means reconnecting in
// plaintext; the Require modes never send mail in plaintext.
func (cl *Client) open(ctx context.Context, key poolKey, policy tlspolicy.Policy) (*session, error) {
	conn, ext, err := cl.greet(ctx, key)
	if err != nil {
		return nil, err
	}
	s := &session{key: key, host: key.host, created: cl.now()}
	_, offered := ext["STARTTLS"]
	switch {
	case offered:
		cfg, check := policy.ClientConfig(key.host, key.domain)
		tconn, terr := cl.startTLS(ctx, conn, cfg)
		if terr == nil {
			st := tconn.ConnectionState()
			s.tls = TLSInfo{Version: st.Version, Cipher: st.CipherSuite, Verified: check.Verified}
			if check.Err != nil {
				s.tls.VerifyError = check.Err.Error()
			}
			conn = tconn
			break
		}
		_ = conn.Close()
		if policy.Mode != tlspolicy.Opportunistic {
			return nil, &hostError{status: "4.7.10", reason: fmt.Sprintf("TLS with %s failed: %v", key.host, terr)}
		}
		// Opportunistic: the same host again, without STARTTLS.
		conn, _, err = cl.greet(ctx, key)
		if err != nil {
			return nil, err
		}
		s.tls.PlaintextFallback = true
		cl.metrics.TLSFallbacks.WithLabelValues(policyLabel(key.policy)).Inc()
	case policy.Mode != tlspolicy.Opportunistic:
		_ = conn.Close()
		return nil, &hostError{status: "4.7.10", reason: fmt.Sprintf("TLS required but %s does not offer STARTTLS", key.host)}
	}
	// go-smtp's client cannot send STARTTLS after an EHLO with our own name, so the
	// steps above are done by hand and the client takes over here, reading a replayed
	// greeting and saying EHLO again (over TLS, RFC 3207 requires it).
	c := smtp.NewClient(&replayConn{Conn: conn, pending: []byte("220 resumed\r\n")})
	c.CommandTimeout = cl.opts.CommandTimeout
	c.SubmissionTimeout = cl.opts.DataTimeout
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	err = c.Hello(cl.opts.HELOName)
	stop()
	if err != nil {
		_ = c.Close()
		return nil, hostErrorOf(key.host, "EHLO", err)
	}
	s.c = c
	return s, nil
}

// greet connects and reads the greeting, then says EHLO and returns the extensions.
func (cl *Client) greet(ctx context.Context, key poolKey) (net.Conn, map[string]string, error) {
	dctx, cancel := context.WithTimeout(ctx, cl.opts.ConnectTimeout)
	conn, err := cl.opts.Dial(dctx, "tcp", key.addr)
	cancel()
	if err != nil {
		cl.metrics.Connections.WithLabelValues("failed").Inc()
		return nil, nil, &hostError{status: "4.4.1", reason: fmt.Sprintf("connecting to %s [%s]: %v", key.host, key.addr, stripAddr(err))}
	}
	cl.metrics.Connections.WithLabelValues("opened").Inc()
	// The deadline is set before the cancellation hook, which must win over it.
	_ = conn.SetDeadline(time.Now().Add(cl.opts.CommandTimeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer func() {
		if stop() {
			_ = conn.SetDeadline(time.Time{})
		}
	}()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		_ = conn.Close()
		return nil, nil, hostErrorOf(key.host, "greeting", protoErr(err))
	}
	id, err := tp.Cmd("EHLO %s", cl.opts.HELOName)
	if err != nil {
		_ = conn.Close()
		return nil, nil, hostErrorOf(key.host, "EHLO", err)
	}
	tp.StartResponse(id)
	code, msg, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	if err != nil && (code == 500 || code == 502) {
		// An RFC 821 server: HELO, and no extensions (so no STARTTLS).
		msg = ""
		if id, err = tp.Cmd("HELO %s", cl.opts.HELOName); err == nil {
			tp.StartResponse(id)
			_, _, err = tp.ReadResponse(250)
			tp.EndResponse(id)
		}
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, hostErrorOf(key.host, "EHLO", protoErr(err))
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
		return nil, nil, &hostError{status: "4.5.0", reason: fmt.Sprintf("%s sent unexpected data after EHLO", key.host)}
	}
	return &bufConn{Conn: conn, r: tp.R}, ext, nil
}

// startTLS sends STARTTLS and runs the handshake.
func (cl *Client) startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(cl.opts.CommandTimeout))
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
		return nil, errors.New("server sent data after its STARTTLS reply")
	}
	tconn := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, cl.opts.CommandTimeout)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return tconn, nil
}

// hostErrorOf describes a failure before MAIL FROM.
func hostErrorOf(host, stage string, err error) *hostError {
	if _, status, reply, ok := replyOf(err); ok {
		return &hostError{status: status, reply: reply, reason: fmt.Sprintf("%s refused at %s", host, stage)}
	}
	return &hostError{status: "4.4.2", reason: fmt.Sprintf("%s: %s: %v", host, stage, err)}
}

// protoErr turns a textproto reply error into go-smtp's error type, so replyOf reads it.
func protoErr(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg, EnhancedCode: smtp.NoEnhancedCode}
	if code, rest, ok := strings.Cut(te.Msg, " "); ok {
		var a, b, c int
		if n, _ := fmt.Sscanf(code, "%d.%d.%d", &a, &b, &c); n == 3 {
			se.EnhancedCode, se.Message = smtp.EnhancedCode{a, b, c}, rest
		}
	}
	return se
}

// stripAddr keeps dial errors short: the address is already in the message.
func stripAddr(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
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
