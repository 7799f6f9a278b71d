package dev

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postwarden/postwarden/test/testkit"
)

// pollEvery is how often the waits below look again.
const pollEvery = 25 * time.Millisecond

// Poll calls check until it returns nil or ctx ends (its deadline, or timeout when ctx
// has none), returning check's last error then.
func Poll(ctx context.Context, timeout time.Duration, check func() error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return testkit.Poll(ctx, pollEvery, check)
}

// DialSubmission connects to submission and does STARTTLS, verifying the relay against
// the dev CA. It returns the certificate the relay served.
func (e *Env) DialSubmission() (*smtp.Client, *x509.Certificate, error) {
	c, err := smtp.DialStartTLS(e.Info.Submission, e.TLSConfig())
	if err != nil {
		return nil, nil, err
	}
	// The handshake happens at the first command after STARTTLS.
	if err := c.Noop(); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	state, ok := c.TLSConnectionState()
	if !ok || len(state.PeerCertificates) == 0 {
		_ = c.Close()
		return nil, nil, errors.New("no TLS after STARTTLS")
	}
	return c, state.PeerCertificates[0], nil
}

// waitRelayCertificate waits until submission serves a certificate the dev CA signed.
func (e *Env) waitRelayCertificate(ctx context.Context) error {
	err := Poll(ctx, 20*time.Second, func() error {
		c, _, err := e.DialSubmission()
		if err != nil {
			return err
		}
		_ = c.Quit()
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the relay certificate: %w", err)
	}
	return nil
}

// WaitCredential waits for a credential Secret and returns its username and password.
func (e *Env) WaitCredential(ctx context.Context, namespace, name string) (username, password string, err error) {
	err = Poll(ctx, time.Minute, func() error {
		var s corev1.Secret
		if err := e.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &s); err != nil {
			return err
		}
		username, password = string(s.Data["username"]), string(s.Data["password"])
		if username == "" || password == "" {
			return errors.New("the secret has no username or password yet")
		}
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("waiting for secret %s/%s: %w", namespace, name, err)
	}
	return username, password, nil
}

// Login does STARTTLS and AUTH PLAIN; the error is the relay's answer.
func (e *Env) Login(username, password string) (*smtp.Client, error) {
	c, _, err := e.DialSubmission()
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", username, password)); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// WaitLogin waits until AUTH succeeds (accept) or is refused (!accept).
func (e *Env) WaitLogin(ctx context.Context, username, password string, accept bool) error {
	err := Poll(ctx, time.Minute, func() error {
		c, err := e.Login(username, password)
		if c != nil {
			_ = c.Quit()
		}
		var smtpErr *smtp.SMTPError
		switch {
		case accept && err == nil, !accept && errors.As(err, &smtpErr) && smtpErr.Code == 535:
			return nil
		case accept:
			return fmt.Errorf("login refused: %w", err)
		default:
			return fmt.Errorf("login still works (%v)", err)
		}
	})
	if err != nil {
		return fmt.Errorf("waiting for the login to be %s: %w", map[bool]string{true: "accepted", false: "refused"}[accept], err)
	}
	return nil
}

// Submit sends one message through submission with the given login.
func (e *Env) Submit(username, password, from string, to []string, msg string) error {
	c, err := e.Login(username, password)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// SendInbound sends one message to the inbound port, as a remote MTA would.
func (e *Env) SendInbound(from string, to []string, msg string) error {
	c, err := smtp.DialStartTLS(e.Info.Inbound, e.TLSConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// NewMessage builds a small RFC 5322 message with a unique Message-ID.
func NewMessage(from, to, subject, id string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@dev.postwarden>\r\nDate: %s\r\n\r\nHello from postwarden dev.\r\n",
		from, to, subject, id, time.Now().UTC().Format(time.RFC1123Z))
}
