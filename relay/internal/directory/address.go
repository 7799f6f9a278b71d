package directory

import (
	"errors"
	"strings"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Address syntax errors. The SMTP layer answers all of them with 553 5.1.3 (or 501 for a
// malformed header), never with the text of the error.
var (
	ErrAddressSyntax = errors.New("address is not local@domain")
	ErrRoutedAddress = errors.New("address holds a route (%, !, @ or a source route)")
	ErrAddressDomain = errors.New("address domain is not a DNS name")
)

// Mailbox is a parsed, normalised address.
type Mailbox struct {
	// Local is the local part as sent, without quotes: its case is kept, because the
	// owner of a foreign domain may treat it as significant.
	Local string
	// Domain is the lower-case domain without a trailing dot.
	Domain string
}

// String is Local@Domain, the form stored in the envelope.
func (m Mailbox) String() string { return m.Local + "@" + m.Domain }

// Key is the lower-case address used for every lookup and authorization decision.
// Managed addresses are lower case in the snapshot and Postwarden treats local parts of
// managed domains as case-insensitive (as virtually every mail system does): John@x and
// john@x are the same mailbox, so a sender check cannot be dodged by changing case.
func (m Mailbox) Key() string { return strings.ToLower(m.Local) + "@" + m.Domain }

// ParseMailbox parses an SMTP path or header address as handed over by the protocol
// layer (angle brackets and source routes already removed). It is deliberately strict,
// because this is where open-relay tricks are stopped:
//
//   - exactly one '@': "user@other@local" (what a quoted "user@other"@local becomes once
//     unquoted) is refused;
//   - the local part is a dot-atom of printable ASCII without '%' and '!': the percent
//     hack (user%other@local) and bang paths (other!user@local) are refused, as are
//     quotes, backslashes, spaces and control characters;
//   - a leading '@' (an unstripped source route "@a:user@b") or ':' is refused;
//   - the domain is a DNS name: lower-cased; a trailing dot, an address literal
//     ([192.0.2.1]) or an IDN in UTF-8 is refused (A-labels are accepted).
func ParseMailbox(s string) (Mailbox, error) {
	if len(s) > 254 {
		return Mailbox{}, ErrAddressSyntax
	}
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Mailbox{}, ErrAddressSyntax
	}
	if strings.IndexByte(s[at+1:], '@') >= 0 {
		return Mailbox{}, ErrRoutedAddress
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return Mailbox{}, ErrAddressSyntax
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '%' || c == '!' || c == ':':
			return Mailbox{}, ErrRoutedAddress
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("#$&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return Mailbox{}, ErrAddressSyntax
		}
	}
	domain = strings.ToLower(domain)
	if !snapshot.IsDomain(domain) {
		return Mailbox{}, ErrAddressDomain
	}
	return Mailbox{Local: local, Domain: domain}, nil
}
