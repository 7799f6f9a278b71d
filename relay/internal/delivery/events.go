package delivery

import (
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/tracking"
	"github.com/postwarden/postwarden/relay/internal/webhook"
)

// EventSink takes a delivery event for each recipient outcome; it must not block
// (webhook.Sender is one, and decides which domains want which events).
type EventSink = webhook.Sink

// event hands the outcome a tracking line records to the events sink, for the managed
// domain the message is for: a notification's OnBehalfOf, the recipient's domain on a
// route to the domain's own server, else the sender's.
func (r *Runner) event(m *spool.Message, line *tracking.Outcome) {
	if r.opts.Events == nil {
		return
	}
	domain := domainOf(m.Envelope.Sender)
	switch {
	case m.Envelope.Sender == "" && m.Envelope.OnBehalfOf != "":
		domain = m.Envelope.OnBehalfOf
	case line.Direction == DirectionInbound:
		domain = domainOf(line.Recipient)
	}
	if domain == "" {
		return
	}
	r.opts.Events.Enqueue(webhook.Event{
		ID: webhook.NewID(), Type: string(line.Event), Timestamp: r.clock.Now().UTC(), Domain: domain,
		QueueID: m.ID, MessageID: m.Envelope.MessageID, Sender: m.Envelope.Sender, Recipient: line.Recipient,
		Direction: line.Direction, Attempt: line.Attempt,
		EnhancedCode: line.EnhancedCode, ReplyCode: line.ReplyCode, Reply: line.Reply, RemoteHost: line.RemoteHost,
		TLS: webhook.TLS{Version: line.TLSVersion, Cipher: line.TLSCipher, Verified: line.TLSVerified},
	})
}
