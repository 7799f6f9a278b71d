package delivery

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// session is an SMTP connection ready for MAIL FROM.
type session struct {
	c *smtp.Client
	// raw is the connection under c, and r reads replies from it, for transactions
	// that pipeline (pipeline.go); pipelining says the server offered PIPELINING.
	raw        net.Conn
	r          *textproto.Reader
	w          *bufio.Writer // made at the first message
	pipelining bool

	key     poolKey
	host    string
	tls     TLSInfo
	created time.Time
	idle    time.Time // when it was last returned to the pool
	uses    int
}

// poolKey says which deliveries may share a session: same address and host name (the
// endpoint, whose name a certificate was checked against, and whether an admin named
// it), same recipient domain, same TLS policy and same login.
type poolKey struct {
	ep         outbound.Endpoint
	domain     string
	policy     string // the TLSDeliveryPolicy that applies, "" for the default
	mode       tlspolicy.Mode
	minVersion uint16
	roots      *x509.CertPool
	// login identifies the credentials a session logged in with: two tenants whose
	// routes share a smarthost never share a session, and a new password opens a new
	// one. Empty: no login.
	login string
}

// loginOf is the pool's name for r's credentials: the Secret's name and a digest of
// what it holds, never the password itself.
func loginOf(r Route) string {
	if r.Auth == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(r.Auth.Username + "\x00" + r.Auth.Password))
	return r.AuthSecret + "/" + hex.EncodeToString(sum[:])
}

func (s *session) close() { _ = s.c.Close() }

// open opens a session to key's endpoint through outbound, which does the TLS policy's
// part and counts connections in the metrics through the client's hooks.
func (cl *Client) open(ctx context.Context, key poolKey, route Route) (*session, error) {
	conn, err := cl.out.Open(ctx, key.ep, outbound.Params{Policy: route.Policy, Domain: key.domain, Auth: route.Auth})
	if err != nil {
		return nil, err
	}
	s := &session{c: conn.Client, key: key, host: key.ep.Host, tls: conn.TLS, created: cl.now(), raw: conn.Raw}
	s.pipelining, _ = conn.Client.Extension("PIPELINING")
	s.pipelining = s.pipelining && !cl.opts.noPipelining
	s.r = textproto.NewReader(bufio.NewReader(conn.Raw))
	return s, nil
}
