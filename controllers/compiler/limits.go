package compiler

import (
	"time"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// The built-in sending limits (see relayv1alpha1.SendingLimits for why these).
const (
	DefaultMessagesPerWindow    = 500
	DefaultLimitWindow          = 10 * time.Minute
	DefaultMessagesPerDay       = 2500
	DefaultRecipientsPerMessage = 100
	DefaultRecipientsPerDay     = 10000
)

// ResolveLimits is a credential's limits with its MailDomain's defaults, then the
// built-in ones, filled in; -1 (unlimited) becomes the snapshot's 0.
func ResolveLimits(cred, domain *relayv1alpha1.SendingLimits) *snapshot.Limits {
	var c, d relayv1alpha1.SendingLimits
	if cred != nil {
		c = *cred
	}
	if domain != nil {
		d = *domain
	}
	pick := func(cv, dv int32, builtin int) int {
		v := cv
		if v == 0 {
			v = dv
		}
		switch {
		case v == 0:
			return builtin
		case v < 0:
			return 0
		}
		return int(v)
	}
	window := DefaultLimitWindow
	switch {
	case c.Window != nil && c.Window.Duration > 0:
		window = c.Window.Duration
	case d.Window != nil && d.Window.Duration > 0:
		window = d.Window.Duration
	}
	l := &snapshot.Limits{
		MessagesPerWindow:    pick(c.MessagesPerWindow, d.MessagesPerWindow, DefaultMessagesPerWindow),
		MessagesPerDay:       pick(c.MessagesPerDay, d.MessagesPerDay, DefaultMessagesPerDay),
		RecipientsPerMessage: pick(c.RecipientsPerMessage, d.RecipientsPerMessage, DefaultRecipientsPerMessage),
		RecipientsPerDay:     pick(c.RecipientsPerDay, d.RecipientsPerDay, DefaultRecipientsPerDay),
	}
	if l.MessagesPerWindow > 0 {
		l.WindowSeconds = int(window / time.Second)
	}
	return l
}
