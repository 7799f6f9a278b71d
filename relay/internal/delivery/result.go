package delivery

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/postwarden/postwarden/relay/outbound"
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

// replyParts splits Reply ("550 5.1.1 no such user" or "550 no such user") into its
// code and its text after the codes, for the tracking log; without a reply the code is
// 0 and the text the local reason. A reply that reached no transaction (a greeting or
// EHLO refused) keeps the reason in front, since it names the host.
func (r RecipientResult) replyParts() (int, string) {
	if r.Reply == "" {
		return 0, r.Reason
	}
	first, rest, _ := strings.Cut(r.Reply, " ")
	code, err := strconv.Atoi(first)
	if err != nil || code < 200 || code > 599 {
		return 0, r.Reply
	}
	if ec, after, _ := strings.Cut(rest, " "); isEnhancedCode(ec) {
		rest = after
	}
	if r.Reason != "" {
		rest = r.Reason + ": " + rest
	}
	return code, rest
}

// isEnhancedCode reports whether s has the shape of an RFC 3463 code, class.subject.detail.
func isEnhancedCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// TLSInfo describes the session a transaction ran on.
type TLSInfo = outbound.TLSInfo

// Result is the outcome of one Deliver call.
type Result struct {
	// Recipients are in the order of Request.Recipients.
	Recipients []RecipientResult
	// RemoteMTA is the host that answered the transaction, and RemoteAddr its address;
	// empty when none did.
	RemoteMTA  string
	RemoteAddr netip.Addr
	// TLS describes that host's session.
	TLS TLSInfo
}

// classify turns a command's error into a recipient outcome.
func classify(addr string, err error) RecipientResult {
	code, status, reply, ok := outbound.ReplyOf(err)
	switch {
	case !ok:
		return RecipientResult{Address: addr, Outcome: Deferred, Status: "4.4.2", Reason: "connection lost: " + err.Error()}
	case code >= 500 && code < 600:
		return RecipientResult{Address: addr, Outcome: Failed, Status: status, Reply: reply}
	default:
		return RecipientResult{Address: addr, Outcome: Deferred, Status: status, Reply: reply}
	}
}
