package smtpd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/webhook"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// refusedRcpt sends a "refused" delivery event for a recipient of a managed domain
// refused on port 25 (an unknown or invalid user, a domain without its own server): the
// domain's owner learns what the gateway turned away, as Proofpoint's message log
// shows. A recipient of no managed domain (relay access denied) belongs to no tenant.
func (ss *session) refusedRcpt(txn *transaction, to string, reply error) {
	if ss.srv.opts.Events == nil || txn.direction != directionInbound {
		return
	}
	m, err := directory.ParseMailbox(to)
	if err != nil {
		return
	}
	d := ss.dir.Lookup(m.Key()).Domain
	if d == nil {
		return
	}
	ss.refused(txn, d.Name, m.String(), reply)
}

// refusedData sends a "refused" event for each recipient of a message refused at DATA
// (too big, a header the relay refuses, a revoked credential): for the recipients'
// domains on port 25, for the sender's domain on submission.
func (ss *session) refusedData(txn *transaction, reply error) {
	if ss.srv.opts.Events == nil {
		return
	}
	for _, rcpt := range txn.rcpts {
		domain := strings.ToLower(snapshot.Domainpart(txn.sender))
		if txn.direction == directionInbound {
			domain = strings.ToLower(snapshot.Domainpart(rcpt))
		}
		if domain != "" && ss.dir.Domain(domain) != nil {
			ss.refused(txn, domain, rcpt, reply)
		}
	}
}

func (ss *session) refused(txn *transaction, domain, rcpt string, reply error) {
	ev := webhook.Event{
		ID: webhook.NewID(), Type: snapshot.EventRefused, Timestamp: ss.srv.opts.Now().UTC(), Domain: domain,
		QueueID: txn.queueID, MessageID: txn.messageID, Sender: txn.sender, Recipient: rcpt,
		Direction: txn.direction, TLS: webhook.TLS{Version: ss.tlsVersion(), Cipher: ss.tlsCipher()},
	}
	var se *smtp.SMTPError
	if errors.As(reply, &se) {
		ev.ReplyCode, ev.Reply = se.Code, se.Message
		ev.EnhancedCode = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	ss.srv.opts.Events.Enqueue(ev)
}
