package delivery

import "github.com/postwarden/postwarden/relay/outbound"

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
type TLSInfo = outbound.TLSInfo

// Result is the outcome of one Deliver call.
type Result struct {
	// Recipients are in the order of Request.Recipients.
	Recipients []RecipientResult
	// RemoteMTA is the host that answered the transaction; empty when none did.
	RemoteMTA string
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
