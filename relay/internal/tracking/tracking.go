// Package tracking is the schema of the relay's message-tracking log: one JSON line per
// event in a message's life, each naming the message by the same queue ID that the
// client's 250 reply and the relay's Received: header carry. smtpd writes a
// Transaction at the end of every mail transaction; delivery writes an Outcome for each
// recipient of each attempt and a Notification for each DSN it queues.
//
// The event names and field keys below are the whole schema, and the Log methods are
// the only writers of tracking lines. docs/operating.md ("Message tracking") documents
// every event and field, and relay/tracking_docs_test.go checks that table and runs the
// documented queries against a real relay's log. Admins build queries and alerts on
// these names: add fields, never rename or retype one.
//
// Every field of an event is written on every line of that event, empty or zero when it
// does not apply, so a query never has to tell a missing field from an empty one. The
// sender, recipients and Message-ID come from the client: they go out only as slog
// attributes, which the JSON handler escapes, and never formatted into the message.
package tracking

import (
	"context"
	"log/slog"
	"math"
	"net/netip"
	"time"
)

// Msg is the msg of every tracking line; event says which one it is.
const Msg = "message"

// Event names a tracking line.
type Event string

// The events. A DSN the relay generates has no Accepted line: its DSNSent line is where
// it enters the queue, and its own deliveries follow under DSNQueueID.
const (
	// Accepted: the message is in the spool (fsync'd) and the client got its 250.
	Accepted Event = "accepted"
	// Rejected: the transaction ended in a refusal at DATA; nothing was queued.
	Rejected Event = "rejected"
	// Abandoned: the transaction ended (RSET, QUIT, a dropped connection) before DATA.
	Abandoned Event = "abandoned"
	// Delivered: the recipient's server accepted the message.
	Delivered Event = "delivered"
	// Deferred: this attempt failed for the recipient, and it will be retried.
	Deferred Event = "deferred"
	// Bounced: the recipient failed for good (5xx, null MX, no such domain).
	Bounced Event = "bounced"
	// Expired: the recipient was still failing when the queue lifetime ended.
	Expired Event = "expired"
	// DSNSent: a bounce or delay notification to the sender was queued.
	DSNSent Event = "dsn_sent"
)

// Field keys. "time", "level" and "msg" are slog's own.
const (
	KeyEvent   = "event"
	KeyQueueID = "queue_id"

	// Transaction fields.
	KeyListener           = "listener"
	KeySession            = "session"
	KeyClientIP           = "client_ip"
	KeySASLUser           = "sasl_user"
	KeySendingServer      = "sending_server"
	KeySender             = "sender"
	KeyRecipients         = "recipients"
	KeyRejectedRecipients = "rejected_recipients"
	KeyMessageID          = "message_id"
	KeySize               = "size"
	KeyDirection          = "direction"
	KeyTLSVersion         = "tls_version"
	KeyTLSCipher          = "tls_cipher"
	KeyReason             = "reason"
	KeyDKIM               = "dkim"

	// Outcome fields, besides queue_id, sasl_user, sender, direction and the TLS ones.
	KeyRecipient    = "recipient"
	KeyAttempt      = "attempt"
	KeyDelay        = "delay_seconds"
	KeyRemoteHost   = "remote_host"
	KeyRemoteIP     = "remote_ip"
	KeyReplyCode    = "reply_code"
	KeyEnhancedCode = "enhanced_code"
	KeyReply        = "reply"
	KeyTLSVerified  = "tls_verified"
	KeyTLSPolicy    = "tls_policy"
	KeyTLSMode      = "tls_mode"

	// Notification fields, besides queue_id and recipients.
	KeyDSNQueueID = "dsn_queue_id"
	KeyDSNKind    = "dsn_kind"
	KeyTo         = "to"
)

// DSN kinds, the values of dsn_kind.
const (
	DSNBounce = "bounce"
	DSNDelay  = "delay"
)

// NoTLS is tls_version and tls_cipher for a plaintext session.
const NoTLS = "none"

// Transaction is the end of one mail transaction on a listener.
type Transaction struct {
	Event Event // Accepted, Rejected or Abandoned
	// Listener is "submission" or "inbound"; Session the connection's id.
	Listener, Session, ClientIP string
	QueueID                     string // Accepted only
	MessageID                   string // the Message-ID header, once DATA read it
	// SASLUser is the AUTH username; SendingServer the managed domain whose sending
	// servers (IP allowlist) let the client relay without AUTH. At most one is set.
	SASLUser, SendingServer string
	Sender                  string
	Recipients              []string
	RejectedRecipients      int
	Direction               string
	Size                    int64 // bytes the client sent in DATA
	TLSVersion, TLSCipher   string
	Reason                  string // Rejected only: why
	// DKIM are the selectors the message was signed with, in the order of its
	// signatures; written on Accepted lines only, [] for a message not signed.
	DKIM []string
}

// Log writes t. An abandoned transaction that never got a recipient is written at
// debug level: monitoring probes and clients that only check the connection would
// otherwise fill the log with it.
func (t *Transaction) Log(ctx context.Context, l *slog.Logger) {
	level := slog.LevelInfo
	if t.Event == Abandoned && len(t.Recipients) == 0 && t.RejectedRecipients == 0 {
		level = slog.LevelDebug
	}
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String(KeyEvent, string(t.Event)),
		slog.String(KeyQueueID, t.QueueID),
		slog.String(KeyListener, t.Listener),
		slog.String(KeySession, t.Session),
		slog.String(KeyClientIP, t.ClientIP),
		slog.String(KeySASLUser, t.SASLUser),
		slog.String(KeySendingServer, t.SendingServer),
		slog.String(KeySender, t.Sender),
		slog.Any(KeyRecipients, list(t.Recipients)),
		slog.Int(KeyRejectedRecipients, t.RejectedRecipients),
		slog.String(KeyMessageID, t.MessageID),
		slog.Int64(KeySize, t.Size),
		slog.String(KeyDirection, t.Direction),
		slog.String(KeyTLSVersion, t.TLSVersion),
		slog.String(KeyTLSCipher, t.TLSCipher),
		slog.String(KeyReason, t.Reason),
	}
	if t.Event == Accepted {
		attrs = append(attrs, slog.Any(KeyDKIM, list(t.DKIM)))
	}
	l.LogAttrs(ctx, level, Msg, attrs...)
}

// Outcome is what one delivery attempt did for one recipient.
type Outcome struct {
	Event     Event // Delivered, Deferred, Bounced or Expired
	QueueID   string
	SASLUser  string // of the message, so a user's mail can be followed to its end
	Sender    string
	Recipient string
	Direction string // of the route: "inbound" to a managed domain's own server
	Attempt   int    // 1 for the first
	// Delay is the time since the message was accepted.
	Delay time.Duration
	// RemoteHost and RemoteIP are the server that answered the transaction; empty when
	// none did (no MX, no connection, TLS refused), and Reply then says why.
	RemoteHost string
	RemoteIP   netip.Addr
	// ReplyCode is the server's reply code, 0 when the outcome was decided here.
	// EnhancedCode is the RFC 3463 status either way; Reply the server's text after
	// the codes, or the local reason.
	ReplyCode    int
	EnhancedCode string
	Reply        string
	// TLS of the session, NoTLS for plaintext; TLSVerified says the certificate chain
	// and name verified.
	TLSVersion, TLSCipher string
	TLSVerified           bool
	// TLSPolicy is the TLSDeliveryPolicy that applied ("namespace/name", or "default"),
	// TLSMode its mode; both empty when the attempt failed before routing.
	TLSPolicy, TLSMode string
}

// Log writes o.
func (o *Outcome) Log(ctx context.Context, l *slog.Logger) {
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	ip := ""
	if o.RemoteIP.IsValid() {
		ip = o.RemoteIP.String()
	}
	l.LogAttrs(ctx, slog.LevelInfo, Msg,
		slog.String(KeyEvent, string(o.Event)),
		slog.String(KeyQueueID, o.QueueID),
		slog.String(KeySASLUser, o.SASLUser),
		slog.String(KeySender, o.Sender),
		slog.String(KeyRecipient, o.Recipient),
		slog.String(KeyDirection, o.Direction),
		slog.Int(KeyAttempt, o.Attempt),
		slog.Float64(KeyDelay, seconds(o.Delay)),
		slog.String(KeyRemoteHost, o.RemoteHost),
		slog.String(KeyRemoteIP, ip),
		slog.Int(KeyReplyCode, o.ReplyCode),
		slog.String(KeyEnhancedCode, o.EnhancedCode),
		slog.String(KeyReply, o.Reply),
		slog.String(KeyTLSVersion, o.TLSVersion),
		slog.String(KeyTLSCipher, o.TLSCipher),
		slog.Bool(KeyTLSVerified, o.TLSVerified),
		slog.String(KeyTLSPolicy, o.TLSPolicy),
		slog.String(KeyTLSMode, o.TLSMode),
	)
}

// Notification is a DSN queued to a message's sender.
type Notification struct {
	QueueID    string // of the message reported on
	DSNQueueID string // of the notification itself
	Kind       string // DSNBounce or DSNDelay
	To         string // the original sender
	Recipients []string
}

// Log writes n.
func (n *Notification) Log(ctx context.Context, l *slog.Logger) {
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	l.LogAttrs(ctx, slog.LevelInfo, Msg,
		slog.String(KeyEvent, string(DSNSent)),
		slog.String(KeyQueueID, n.QueueID),
		slog.String(KeyDSNQueueID, n.DSNQueueID),
		slog.String(KeyDSNKind, n.Kind),
		slog.String(KeyTo, n.To),
		slog.Any(KeyRecipients, list(n.Recipients)),
	)
}

// list keeps an empty list an array in JSON: a nil slice would be null, another type.
func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// seconds rounds to the millisecond: finer is noise for a queue delay.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}
