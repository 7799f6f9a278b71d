// Package queueadmin is the relay's admin endpoint for its queue, what Postfix's
// mailq, postqueue and postsuper talk to: an HTTP+JSON API on a Unix socket in the
// spool volume, never on the network, so it is used from inside the pod (kubectl
// exec). It owns the socket (created at start with mode 0600, a stale one replaced,
// removed at stop), the peer check and audit log, the wire types, and the client that
// `postwarden queue` (relay/internal/queuecli) uses. What a command does to a message,
// and when it may, is the delivery package's Admin.
//
// The API, version 1:
//
//	GET  /v1/messages?sender=&recipient=&credential=&state=&older-than=&newer-than=
//	GET  /v1/messages/{id}
//	POST /v1/messages/{id}/{retry|hold|release|delete|bounce}   body: Request
//	POST /v1/retry-all                                           body: Request
//
// Answers are JSON: []Message under "messages", a Detail, a Result, or an Error.
package queueadmin

import (
	"time"

	"github.com/postwarden/postwarden/relay/internal/delivery"
)

// SocketName is the socket's name in the spool folder, the default of both the
// relay's --admin-socket and the CLI's --socket.
const SocketName = "admin.sock"

// States of a queued message.
const (
	StateActive   = "active"   // due, or being delivered
	StateDeferred = "deferred" // waiting for its next attempt
	StateHeld     = "held"     // held by an administrator until released
)

// Message is a queued message as list shows it.
type Message struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// InFlight is true while a delivery attempt runs (State is then active).
	InFlight bool   `json:"inFlight,omitempty"`
	Sender   string `json:"sender"` // "" is the null sender (a notification)
	// Credential is the SASL user name that submitted the message; "" when it came
	// unauthenticated (port 25, a sending server, or a notification of the relay's).
	Credential  string      `json:"credential,omitempty"`
	ClientIP    string      `json:"clientIP,omitempty"`
	Direction   string      `json:"direction"`
	ReceivedAt  time.Time   `json:"receivedAt"`
	Size        int64       `json:"size"` // as delivered: the stored body and the signatures put before it
	Attempts    int         `json:"attempts"`
	NextAttempt time.Time   `json:"nextAttempt"`
	Recipients  []Recipient `json:"recipients"`
}

// Recipient is one recipient's delivery state.
type Recipient struct {
	Address string `json:"address"`
	Status  string `json:"status"` // Pending, Delivered or Failed
	// Attempts that included this recipient.
	Attempts int `json:"attempts,omitempty"`
	// LastReply is "status; remote host; text" of the last attempt: the remote
	// server's reply, or the relay's reason when no server answered (no host).
	LastReply string    `json:"lastReply,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Detail is one message as show tells it.
type Detail struct {
	Message
	// DelayNotified is true once the sender was sent a delay notice.
	DelayNotified bool `json:"delayNotified,omitempty"`
	// OnBehalfOf is, for a notification, the managed domain it speaks for.
	OnBehalfOf string `json:"onBehalfOf,omitempty"`
	// Headers is the message's header section as queued, with LF line endings. The
	// first field is the relay's Received: header, which names the TLS version and
	// cipher of a session that used STARTTLS; the TLS of outgoing attempts is in the
	// relay's delivery: attempt log lines only.
	Headers string `json:"headers"`
}

// Filter selects messages for list; empty fields select all.
type Filter struct {
	// Sender, Recipient: an address (any case), or @domain for all of a domain's;
	// Sender <> is the null sender.
	Sender, Recipient string
	// Credential: the SASL user name, exactly.
	Credential string
	State      string
	// OlderThan, NewerThan: received more than, or less than, this long ago.
	OlderThan, NewerThan time.Duration
}

// Request is the body of a command.
type Request struct {
	// Reason is the administrator's own words, written to the relay's log beside the
	// command; never to the sender.
	Reason string `json:"reason,omitempty"`
}

// Commands.
const (
	CmdRetry   = "retry"
	CmdHold    = "hold"
	CmdRelease = "release"
	CmdDelete  = "delete"
	CmdBounce  = "bounce"
)

// Result is the answer to a command that succeeded.
type Result struct {
	Command string `json:"command"`
	ID      string `json:"id,omitempty"`
	// Outcome is one word, for scripts: retried, in-flight (retry of a message being
	// delivered: nothing to do), held, released, unchanged (hold of a held message,
	// release of one not held), deleted, bounced (a DSN was queued), removed (bounce
	// with nobody to tell: the null sender, or no recipient left to report).
	Outcome string `json:"outcome"`
	// Counts are retry-all's.
	Counts *delivery.RetryCounts `json:"counts,omitempty"`
}

// Outcomes of Result.
const (
	OutcomeRetried   = "retried"
	OutcomeInFlight  = "in-flight"
	OutcomeHeld      = "held"
	OutcomeReleased  = "released"
	OutcomeUnchanged = "unchanged"
	OutcomeDeleted   = "deleted"
	OutcomeBounced   = "bounced"
	OutcomeRemoved   = "removed"
)

// Error is the answer to a request that failed, and the client's error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Error codes.
const (
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeInFlight     = "in_flight" // the message is being delivered: try again
	CodeBusy         = "busy"      // another command is changing it: try again
	CodeHeld         = "held"      // retry of a held message
	CodeDeliveryOff  = "delivery_off"
	CodeShuttingDown = "shutting_down"
	CodeForbidden    = "forbidden"   // the peer is not the relay's user nor root
	CodeUnreachable  = "unreachable" // client side: no relay answers on the socket
	CodeTimeout      = "timeout"     // client side: no answer in time
	CodeInternal     = "internal"
)
