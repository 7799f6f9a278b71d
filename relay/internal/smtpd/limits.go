package smtpd

import (
	"fmt"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/sendlimit"
)

// admitMessage reserves the transaction's message of its credential's sending limits
// (submission only: the limits are the credential's).
func (ss *session) admitMessage(txn *transaction) error {
	lim := ss.srv.opts.SendLimits
	if lim == nil || ss.cred == nil {
		return nil
	}
	t, refused := lim.Begin(ss.cred.Username, ss.cred.Source, ss.cred.Limits)
	if refused != sendlimit.None {
		return ss.limited(refused)
	}
	txn.sendLimit = t
	return nil
}

// admitRecipient reserves one more recipient of the transaction.
func (ss *session) admitRecipient(txn *transaction) error {
	if txn.sendLimit == nil {
		return nil
	}
	if refused := txn.sendLimit.AddRecipient(len(txn.rcpts)+1, ss.cred.Limits); refused != sendlimit.None {
		return ss.limited(refused)
	}
	return nil
}

// limited is the reply to a transaction over a limit. It names the limit and the
// credential's own values, nothing of anyone else's.
func (ss *session) limited(l sendlimit.Limit) error {
	ss.srv.metrics.SendLimited.WithLabelValues(l.String()).Inc()
	ss.srv.metrics.CredentialMessages.WithLabelValues(ss.cred.Source.String(), "limited").Inc()
	ss.log.Info("sending limit reached", "user", ss.cred.Username, "limit", l.String())
	if h := ss.srv.opts.LimitHit; h != nil {
		h(ss.cred, l)
	}
	lim := ss.cred.Limits
	switch l {
	case sendlimit.Window:
		window := time.Duration(lim.WindowSeconds) * time.Second
		return reject(451, smtp.EnhancedCode{4, 7, 1}, "limit_window",
			fmt.Sprintf("Sending limit reached: this login may send %d messages in %s; try again later", lim.MessagesPerWindow, window))
	case sendlimit.Day:
		return reject(550, smtp.EnhancedCode{5, 7, 1}, "limit_day",
			fmt.Sprintf("Daily sending limit reached: this login may send %d messages in 24 hours", lim.MessagesPerDay))
	case sendlimit.RecipientsPerMessage:
		return reject(452, smtp.EnhancedCode{4, 5, 3}, "limit_recipients_message",
			fmt.Sprintf("Too many recipients: at most %d per message; send to the rest in another message", lim.RecipientsPerMessage))
	default:
		return reject(550, smtp.EnhancedCode{5, 7, 1}, "limit_recipients_day",
			fmt.Sprintf("Daily recipient limit reached: this login may send to %d recipients in 24 hours", lim.RecipientsPerDay))
	}
}
