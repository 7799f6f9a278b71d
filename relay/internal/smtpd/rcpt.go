package smtpd

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/directory"
)

// Rcpt checks one recipient against the transaction's direction.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	// go-smtp refuses RCPT during BDAT, so Data cannot run now: no lock needed beyond
	// the read below.
	ss.txnMu.Lock()
	txn := ss.txn
	ss.txnMu.Unlock()
	if txn == nil {
		return ss.srv.fail(ss, reject(503, smtp.EnhancedCode{5, 5, 1}, "bad_sequence", "MAIL first"))
	}
	rcpt, err := ss.rcpt(txn, to)
	if err == nil && !txn.rcptKeys[rcpt] {
		err = ss.admitRecipient(txn)
	}
	if err != nil {
		txn.rejected++
		reply := ss.srv.fail(ss, err)
		ss.refusedRcpt(txn, to, reply)
		return reply
	}
	if !txn.rcptKeys[rcpt] {
		txn.rcptKeys[rcpt] = true
		txn.rcpts = append(txn.rcpts, rcpt)
	}
	if p := ss.srv.opts.Pacer; p != nil && !txn.paced {
		// Once per transaction: a message to many recipients waits no longer than one
		// to a single recipient.
		if waited := p.Pace(rcpt[strings.LastIndexByte(rcpt, '@')+1:]); waited > 0 {
			txn.paced = true
		}
	}
	return nil
}

func (ss *session) rcpt(txn *transaction, to string) (string, error) {
	m, err := directory.ParseMailbox(to)
	if err != nil {
		return "", reject(553, smtp.EnhancedCode{5, 1, 3}, "bad_recipient_syntax",
			"Bad recipient address syntax (quoted, routed or malformed addresses are not accepted)")
	}
	if txn.direction == directionOutbound {
		return m.String(), nil
	}
	key := m.Key()
	e := ss.dir.Lookup(key)
	if e.Domain == nil {
		return "", reject(554, smtp.EnhancedCode{5, 7, 1}, "relay_denied",
			fmt.Sprintf("<%s>: Relay access denied", m))
	}
	if e.Domain.InboundDelivery == nil {
		return "", reject(550, smtp.EnhancedCode{5, 7, 1}, "no_inbound_delivery",
			fmt.Sprintf("<%s>: This relay does not accept inbound mail for %s", m, e.Domain.Name))
	}
	switch e.Kind {
	case directory.KindUser, directory.KindFunctional, directory.KindPending:
		// Pending: SMTP Discovery verified the address with the domain's server.
		return key, nil
	case directory.KindAlias:
		return ss.aliasTarget(key, e), nil
	case directory.KindInvalid:
		return "", reject(550, smtp.EnhancedCode{5, 1, 1}, "invalid_recipient",
			fmt.Sprintf("<%s>: Recipient address rejected: address is not valid", m))
	}
	return ss.verify(e.Domain, key, m)
}

// aliasTarget is the recipient an alias delivers to: its primary address, as Postfix's
// virtual aliases rewrite it, so the message reaches that mailbox (on its own domain's
// server) and a message to both is queued once. An alias whose primary address this
// relay does not deliver inbound is kept and goes to its own domain's server.
func (ss *session) aliasTarget(key string, alias directory.Entry) string {
	t := ss.dir.Lookup(alias.Target)
	if alias.Target == "" || t.Domain == nil || t.Domain.InboundDelivery == nil {
		return key
	}
	if t.Kind != directory.KindUser && t.Kind != directory.KindFunctional {
		return key
	}
	return alias.Target
}

// verify asks the RecipientVerifier, if any, about an unlisted address.
func (ss *session) verify(d *directory.Domain, key string, m directory.Mailbox) (string, error) {
	unknown := reject(550, smtp.EnhancedCode{5, 1, 1}, "unknown_recipient",
		fmt.Sprintf("<%s>: Recipient address rejected: user unknown", m))
	v := ss.srv.opts.RecipientVerifier
	if v == nil {
		return "", unknown
	}
	verdict, err := v.VerifyRecipient(ss.ctx, d, key)
	switch {
	case err != nil:
		r := reject(450, smtp.EnhancedCode{4, 4, 3}, "verify_failed",
			fmt.Sprintf("<%s>: Recipient address could not be verified, try again later", m))
		r.cause = err
		return "", r
	case verdict == VerdictAccept:
		return key, nil
	case verdict == VerdictDefer:
		return "", reject(450, smtp.EnhancedCode{4, 1, 1}, "verify_deferred",
			fmt.Sprintf("<%s>: Recipient address not yet verified, try again later", m))
	}
	return "", unknown
}
