package delivery

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// Outcome is what became of one recipient in one attempt.
type Outcome int

// Outcomes of an attempt.
const (
	// Deferred recipients are retried later (4xx, unreachable hosts, TLS refused).
	Deferred Outcome = iota
	// Delivered recipients were accepted by the remote server.
	Delivered
	// Failed recipients were refused for good (5xx, null MX, no such domain).
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "deferred"
}

// RecipientResult is one recipient's outcome.
type RecipientResult struct {
	Address string
	Outcome Outcome
	// Status is the RFC 3463 enhanced code, such as "2.0.0" or "5.1.1".
	Status string
	// Reply is the remote reply ("550 5.1.1 no such user"); empty when the outcome was
	// decided here, and Reason then says why.
	Reply  string
	Reason string
}

// Text is the reply, or the local reason when there was none.
func (r RecipientResult) Text() string {
	if r.Reply != "" {
		return r.Reply
	}
	return r.Reason
}

// TLSInfo describes the session a transaction ran on.
type TLSInfo struct {
	// Version and Cipher are zero for a plaintext session.
	Version uint16
	Cipher  uint16
	// Verified says the certificate chain and a name (MX host or recipient domain)
	// verified; VerifyError says why not.
	Verified    bool
	VerifyError string
	// PlaintextFallback is set when an opportunistic handshake failed and the message
	// went in plaintext.
	PlaintextFallback bool
}

// VersionName is "TLS1.3" and the like, or "none".
func (t TLSInfo) VersionName() string {
	if t.Version == 0 {
		return "none"
	}
	return strings.ReplaceAll(tls.VersionName(t.Version), " ", "")
}

// CipherName is the cipher suite's name, or "none".
func (t TLSInfo) CipherName() string {
	if t.Version == 0 {
		return "none"
	}
	return tls.CipherSuiteName(t.Cipher)
}

// Result is the outcome of one Deliver call.
type Result struct {
	// Recipients are in the order of Request.Recipients.
	Recipients []RecipientResult
	// RemoteMTA is the host that answered the transaction; empty when none did.
	RemoteMTA string
	// TLS describes that host's session.
	TLS TLSInfo
}

// hostError is why a host could not take the transaction; the next host is tried.
type hostError struct {
	status string
	reply  string // the remote reply, if the host sent one
	reason string
}

func (e *hostError) Error() string {
	if e.reply != "" {
		return e.reason + ": " + e.reply
	}
	return e.reason
}

// replyOf formats a go-smtp error as an SMTP reply line; ok is false when err is not a
// protocol reply (an I/O error).
func replyOf(err error) (code int, status, reply string, ok bool) {
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

// classify turns a command's error into a recipient outcome.
func classify(addr string, err error) RecipientResult {
	code, status, reply, ok := replyOf(err)
	switch {
	case !ok:
		return RecipientResult{Address: addr, Outcome: Deferred, Status: "4.4.2", Reason: "connection lost: " + err.Error()}
	case code >= 500 && code < 600:
		return RecipientResult{Address: addr, Outcome: Failed, Status: status, Reply: reply}
	default:
		return RecipientResult{Address: addr, Outcome: Deferred, Status: status, Reply: reply}
	}
}
