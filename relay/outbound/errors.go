package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"

	"github.com/emersion/go-smtp"
)

// Error is why a host could not take mail: no connection, a refusal before MAIL FROM,
// a TLS requirement not met, an address that is not public. The caller usually tries
// the next host.
type Error struct {
	// Status is the RFC 3463 enhanced status code, such as "4.4.1".
	Status string
	// Code and Reply are the host's reply ("421 4.3.2 shutting down"), when it sent one.
	Code  int
	Reply string
	// Reason says what failed, for logs and delivery status notifications.
	Reason string
	// Err is the cause, for errors.Is: ErrNotPublic, ErrPlaintextAuth, ErrLoginRefused,
	// or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Reply != "" {
		return e.Reason + ": " + e.Reply
	}
	return e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// ReplyOf formats a go-smtp error as an SMTP reply line with its enhanced status; ok is
// false when err is not a protocol reply (an I/O error). A reply without an enhanced
// code gets the class's generic one, and a reply outside 2xx, 4xx and 5xx gets 4.0.0.
func ReplyOf(err error) (code int, status, reply string, ok bool) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return 0, "", "", false
	}
	code = se.Code
	msg := strings.Join(strings.Fields(se.Message), " ")
	ec := se.EnhancedCode
	if ec != smtp.NoEnhancedCode && ec != smtp.EnhancedCodeNotSet && ec[0] == code/100 {
		status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		return code, status, fmt.Sprintf("%d %s %s", code, status, msg), true
	}
	status = fmt.Sprintf("%d.0.0", code/100)
	if code/100 != 4 && code/100 != 5 && code/100 != 2 {
		status = "4.0.0"
	}
	return code, status, fmt.Sprintf("%d %s", code, msg), true
}

// StageError describes a failure of host at stage ("greeting", "EHLO", "MAIL FROM"...):
// the host's reply when it sent one, else the I/O error under 4.4.2.
func StageError(host, stage string, err error) *Error {
	if code, status, reply, ok := ReplyOf(err); ok {
		return &Error{Status: status, Code: code, Reply: reply, Reason: fmt.Sprintf("%s refused at %s", host, stage)}
	}
	return &Error{Status: "4.4.2", Reason: fmt.Sprintf("%s: %s: %v", host, stage, err)}
}

// protoErr turns a textproto reply error into go-smtp's error type, so ReplyOf reads it.
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
