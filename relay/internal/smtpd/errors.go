package smtpd

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/spool"
)

// rejection is a refusal decided by the session: the reply to send and a short reason
// for metrics and logs. Its cause, if any, is for logs only.
type rejection struct {
	code   int
	enh    smtp.EnhancedCode
	text   string
	reason string
	cause  error
}

func (r *rejection) Error() string {
	if r.cause != nil {
		return r.reason + ": " + r.cause.Error()
	}
	return r.reason
}

func (r *rejection) Unwrap() error { return r.cause }

func reject(code int, enh smtp.EnhancedCode, reason, text string) *rejection {
	return &rejection{code: code, enh: enh, text: text, reason: reason}
}

// Reply text of the errors that are not the client's fault: never the internal error.
const (
	textTemporary = "Temporary local problem, please try again later"
	textTimeout   = "Timeout while receiving the message, please try again"
	textStorage   = "Insufficient system storage, please try again later"
	textTooLarge  = "Message exceeds the maximum size"
)

// mapError is the one place where an error becomes an SMTP reply: every error handed to
// go-smtp passes through it, because go-smtp sends the text of any other error verbatim.
// It returns the reply and a reason for metrics. Errors it does not recognise become a
// temporary failure with a fixed text.
func mapError(err error) (*smtp.SMTPError, string) {
	var (
		rej     *rejection
		smtpErr *smtp.SMTPError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &rej):
		return &smtp.SMTPError{Code: rej.code, EnhancedCode: rej.enh, Message: rej.text}, rej.reason
	case errors.Is(err, smtp.ErrDataTooLarge):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: textTooLarge}, "too_large"
	case errors.As(err, &smtpErr):
		// Replies built by go-smtp itself; their texts are fixed strings.
		return smtpErr, "protocol"
	case errors.Is(err, smtp.ErrTooLongLine):
		// go-smtp closes the connection after this reply.
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message has a line over the length limit"}, "line_too_long"
	case errors.Is(err, spool.ErrInsufficientStorage):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: textStorage}, "storage"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: textTimeout}, "timeout"
	case errors.Is(err, smtp.ErrDataReset):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message transfer aborted"}, "aborted"
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: textTemporary}, "internal"
}

func enhancedString(e smtp.EnhancedCode) string {
	return strconv.Itoa(e[0]) + "." + strconv.Itoa(e[1]) + "." + strconv.Itoa(e[2])
}
