package outbound

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Credentials are a username and password for AUTH.
type Credentials struct {
	Username, Password string
}

// ErrLoginRefused is the cause of an Error for a login the server refused, or could
// not take (it offers no mechanism we speak).
var ErrLoginRefused = errors.New("the server refused the login")

// ErrPlaintextAuth is the cause of an Error for credentials that would have gone out in
// plaintext.
var ErrPlaintextAuth = errors.New("credentials are only sent over TLS")

// authenticate runs AUTH PLAIN, or LOGIN when the server offers only that. Over a
// plaintext session it refuses before sending anything: a password must never cross
// the network in the clear, whatever the TLS policy allowed for the mail itself.
func authenticate(c *smtp.Client, host string, info TLSInfo, cr *Credentials) error {
	if !info.Encrypted() {
		return &Error{Status: "4.7.10", Err: ErrPlaintextAuth, Reason: fmt.Sprintf(
			"refusing AUTH with %s: the session is not encrypted, and credentials are only sent over TLS", host)}
	}
	var mech sasl.Client
	switch {
	case c.SupportsAuth(sasl.Plain):
		mech = sasl.NewPlainClient("", cr.Username, cr.Password)
	case c.SupportsAuth(sasl.Login):
		mech = &loginClient{username: cr.Username, password: cr.Password}
	default:
		return &Error{Status: "4.7.0", Err: ErrLoginRefused, Reason: fmt.Sprintf("%s offers neither AUTH PLAIN nor AUTH LOGIN", host)}
	}
	if err := c.Auth(mech); err != nil {
		return softAuthError(StageError(host, "AUTH", err))
	}
	return nil
}

// softAuthError defers a refused login instead of failing the recipients: a wrong or
// expired password is the sender's configuration, fixed by its admin, and the mail
// should wait for that rather than bounce (Postfix's smtp_sasl_auth_soft_bounce, on by
// default). The server's reply stays in the reason.
func softAuthError(e *Error) *Error {
	e.Err = ErrLoginRefused
	if strings.HasPrefix(e.Status, "5.") {
		e.Status = "4" + e.Status[1:]
		e.Reason += " (the login is deferred, not bounced: check the route's username and password)"
	}
	return e
}

// loginClient is the LOGIN mechanism (draft-murchison-sasl-login): the server prompts
// for the username, then the password. Servers word and case the prompts differently,
// so a prompt it does not recognise gets the username first, then the password.
type loginClient struct {
	username, password string
	step               int
}

func (l *loginClient) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (l *loginClient) Next(challenge []byte) ([]byte, error) {
	l.step++
	prompt := strings.ToLower(strings.TrimSpace(string(challenge)))
	switch {
	case strings.HasPrefix(prompt, "user"):
		return []byte(l.username), nil
	case strings.HasPrefix(prompt, "pass"):
		return []byte(l.password), nil
	case l.step == 1:
		return []byte(l.username), nil
	case l.step == 2:
		return []byte(l.password), nil
	}
	return nil, sasl.ErrUnexpectedServerChallenge
}
