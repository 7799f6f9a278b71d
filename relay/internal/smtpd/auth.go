package smtpd

import (
	"bytes"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// dummyHash is verified against when the username is unknown, so that an unknown user
// and a wrong password take the same time.
var dummyHash, _ = snapshot.ParsePasswordHash("hmac-sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")

var (
	errAuthInvalid = reject(535, smtp.EnhancedCode{5, 7, 8}, "bad_credentials", "Authentication credentials invalid")
	errAuthzid     = reject(535, smtp.EnhancedCode{5, 7, 8}, "authzid_mismatch",
		"Authorization identity must be empty or equal to the username")
	errAuthSyntax = reject(501, smtp.EnhancedCode{5, 5, 2}, "malformed", "Malformed authentication data")
)

// AuthMechanisms advertises PLAIN and LOGIN on submission after STARTTLS only.
func (ss *session) AuthMechanisms() []string {
	if ss.srv.opts.Mode != Submission || ss.tls == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts an AUTH exchange.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	m := ss.srv.metrics
	switch {
	case ss.srv.opts.Mode != Submission:
		m.AuthFailures.WithLabelValues("unsupported").Inc()
		return nil, ss.srv.fail(ss, reject(502, smtp.EnhancedCode{5, 5, 1}, "auth_unavailable",
			"Authentication is not available on this port"))
	case ss.tls == nil:
		m.AuthFailures.WithLabelValues("tls_required").Inc()
		return nil, ss.srv.fail(ss, reject(530, smtp.EnhancedCode{5, 7, 0}, "tls_required",
			"Must issue a STARTTLS command first"))
	}
	if ok, scope := ss.srv.auth.Allow(ss.c.ip); !ok {
		m.AuthFailures.WithLabelValues("throttled").Inc()
		ss.log.Warn("auth throttled", "scope", string(scope))
		return nil, ss.srv.fail(ss, reject(454, smtp.EnhancedCode{4, 7, 0}, "auth_throttled",
			"Too many failed authentications, try again later"))
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return &plainServer{ss: ss}, nil
	case sasl.Login:
		return &loginServer{ss: ss}, nil
	}
	m.AuthFailures.WithLabelValues("unsupported").Inc()
	return nil, ss.srv.fail(ss, reject(504, smtp.EnhancedCode{5, 5, 4}, "auth_mechanism",
		"Unrecognized authentication mechanism"))
}

// authenticate checks one set of credentials. The username is used exactly as sent:
// one holding NUL, CR or LF is refused, never truncated.
func (ss *session) authenticate(mech, authzid, username, password string) error {
	m := ss.srv.metrics
	if username == "" || strings.ContainsAny(username, "\x00\r\n") || len(username) > 256 {
		return ss.authFailed("malformed", errAuthSyntax)
	}
	if authzid != "" && authzid != username {
		return ss.authFailed("authzid_mismatch", errAuthzid)
	}
	cred := ss.dir.Credential(username)
	if cred == nil {
		dummyHash.Verify(password)
		return ss.authFailed("bad_credentials", errAuthInvalid)
	}
	if !cred.Hash.Verify(password) {
		return ss.authFailed("bad_credentials", errAuthInvalid)
	}
	ss.cred = cred
	ss.c.authed.Store(true)
	m.AuthSuccesses.WithLabelValues(mech).Inc()
	ss.log.Info("authenticated", "sasl_user", username, "mechanism", mech)
	return nil
}

// authFailed counts a failure against the client's IP and networks, waits the delay the
// limiter asks for, and returns the mapped reply.
func (ss *session) authFailed(reason string, rej *rejection) error {
	ss.srv.metrics.AuthFailures.WithLabelValues(reason).Inc()
	delay := ss.srv.auth.Failure(ss.c.ip)
	ss.log.Info("authentication failed", "reason", reason, "delay", delay.String())
	ss.srv.opts.Sleep(ss.ctx, delay)
	return ss.srv.fail(ss, rej)
}

// plainServer is SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
type plainServer struct {
	ss   *session
	done bool
}

func (p *plainServer) Next(response []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, p.ss.srv.fail(p.ss, errAuthSyntax)
	}
	if response == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	p.done = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 {
		return nil, true, p.ss.authFailed("malformed", errAuthSyntax)
	}
	return nil, true, p.ss.authenticate(sasl.Plain, string(parts[0]), string(parts[1]), string(parts[2]))
}

// loginServer is the obsolete but widespread LOGIN mechanism: username and password,
// each in answer to a challenge (or the username as initial response).
type loginServer struct {
	ss       *session
	step     int
	username string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.step = 2
		l.username = string(response)
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.ss.authenticate(sasl.Login, "", l.username, string(response))
	}
	return nil, true, l.ss.srv.fail(l.ss, errAuthSyntax)
}
