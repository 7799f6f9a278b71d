package snapshot

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Validate checks the whole snapshot and returns every problem found, joined. A relay
// applies a snapshot only when Validate returns nil.
func (s *Snapshot) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	domains := make(map[string]bool, len(s.Domains))
	for i := range s.Domains {
		d := &s.Domains[i]
		if err := d.Validate(); err != nil {
			errs = append(errs, err)
		}
		if domains[d.Name] {
			add("domain %q appears twice", d.Name)
		}
		domains[d.Name] = true
	}

	if s.Relays < 0 {
		add("relays %d is negative", s.Relays)
	}
	users := make(map[string]bool, len(s.Credentials))
	for _, c := range s.Credentials {
		switch {
		case c.Username == "" || strings.ContainsAny(c.Username, "\x00\r\n"):
			add("credential %s: username is empty or holds NUL, CR or LF", c.Source)
		case users[c.Username]:
			add("credential username %q appears twice", c.Username)
		}
		users[c.Username] = true
		if _, _, err := parseHash(c.PasswordHash); err != nil {
			add("credential %q: %v", c.Username, err)
		}
		if !domains[c.Domain] {
			add("credential %q: domain %q is not in the snapshot", c.Username, c.Domain)
		}
		for _, a := range c.AllowedSenders {
			if !IsAddress(a) {
				add("credential %q: allowed sender %q is not an address", c.Username, a)
			}
		}
		if l := c.Limits; l != nil {
			if l.MessagesPerWindow < 0 || l.MessagesPerDay < 0 || l.RecipientsPerMessage < 0 || l.RecipientsPerDay < 0 {
				add("credential %q: a limit is negative", c.Username)
			}
			if l.MessagesPerWindow > 0 && (l.WindowSeconds < 60 || l.WindowSeconds > 86400) {
				add("credential %q: window of %d s is not between 60 s and a day", c.Username, l.WindowSeconds)
			}
		}
	}

	policies := make(map[string]bool, len(s.DiscoveryPolicies))
	for _, p := range s.DiscoveryPolicies {
		policies[p.Name] = true
		if p.Threshold < 1 || p.WindowDays < 1 || p.ExpiryDays < 1 {
			add("discovery policy %s: threshold, windowDays and expiryDays must be at least 1", p.Name)
		}
	}
	for _, d := range s.Domains {
		if d.DiscoveryPolicy != "" && !policies[d.DiscoveryPolicy] {
			add("domain %s: discovery policy %q is not in the snapshot", d.Name, d.DiscoveryPolicy)
		}
	}

	for i := range s.TLSPolicies {
		if err := s.TLSPolicies[i].Validate(); err != nil {
			errs = append(errs, err)
		}
	}

	for _, c := range s.Certificates {
		if (c.SecretName == "") == (c.CertFile == "" || c.KeyFile == "") {
			add("certificate: exactly one of secretName or certFile+keyFile must be set")
		}
	}
	return errors.Join(errs...)
}

// Validate checks one domain on its own, as Snapshot.Validate does for each: the
// operator runs it per MailDomain before rendering, so that one bad object is rejected
// alone instead of making the whole snapshot invalid.
func (d *Domain) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !IsDomain(d.Name) {
		return fmt.Errorf("domain %q is not a lower-case DNS name", d.Name)
	}
	inDomain := func(kind, addr string) {
		if !IsAddress(addr) || Domainpart(addr) != d.Name {
			add("domain %s: %s %q is not an address in the domain", d.Name, kind, addr)
		}
	}
	for _, u := range d.Users {
		inDomain("user", u.Address)
	}
	for _, f := range d.FunctionalAccounts {
		inDomain("functional account", f)
	}
	for _, a := range d.Aliases {
		inDomain("alias", a.Address)
		if !IsAddress(a.Target) || a.Target == a.Address {
			add("domain %s: alias %q has a bad target %q", d.Name, a.Address, a.Target)
		}
	}
	for _, a := range d.InvalidAddresses {
		inDomain("invalid address", a)
	}
	for _, a := range d.Discovered {
		inDomain("discovered address", a.Address)
		switch a.State {
		case DiscoveredPending, DiscoveredUser, DiscoveredInvalid:
		case DiscoveredAlias:
			if !IsAddress(a.Target) || a.Target == a.Address {
				add("domain %s: discovered alias %q has a bad target %q", d.Name, a.Address, a.Target)
			}
		default:
			add("domain %s: discovered address %q has unknown state %q", d.Name, a.Address, a.State)
		}
	}
	for _, c := range d.SendingServers {
		if _, err := netip.ParsePrefix(c); err != nil {
			add("domain %s: sending server %q: %v", d.Name, c, err)
		}
	}
	for _, hop := range []struct {
		what string
		e    *Endpoint
	}{{"inbound delivery", d.InboundDelivery}, {"outbound route", d.OutboundRoute}} {
		what, e := hop.what, hop.e
		if e == nil {
			continue
		}
		if e.Host == "" || e.Port < 1 || e.Port > 65535 {
			add("domain %s: %s %s:%d is not a host and port", d.Name, what, e.Host, e.Port)
		}
		if e.AuthSecret != "" && !isSecretName(e.AuthSecret) {
			add("domain %s: %s names %q, which is not a Secret name", d.Name, what, e.AuthSecret)
		}
	}
	if w := d.DeliveryEvents; w != nil {
		if u, err := url.Parse(w.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			add("domain %s: delivery events url %q is not an https:// URL", d.Name, w.URL)
		}
		if !isSecretName(w.SecretName) {
			add("domain %s: delivery events secret %q is not a Secret name", d.Name, w.SecretName)
		}
		for _, t := range w.Events {
			if !slices.Contains(EventTypes, t) {
				add("domain %s: delivery event type %q is not one of %s", d.Name, t, strings.Join(EventTypes, ", "))
			}
		}
	}
	algorithms := map[string]bool{}
	for _, k := range d.DKIM {
		if !IsDKIMSelector(k.Selector) {
			add("domain %s: DKIM selector %q is not a DNS label sequence", d.Name, k.Selector)
		}
		if k.Algorithm != DKIMRSASHA256 && k.Algorithm != DKIMEd25519SHA256 {
			add("domain %s: DKIM selector %s has unknown algorithm %q", d.Name, k.Selector, k.Algorithm)
		}
		if algorithms[k.Algorithm] {
			add("domain %s: more than one DKIM key signs with %s", d.Name, k.Algorithm)
		}
		algorithms[k.Algorithm] = true
		if !isSecretName(k.SecretName) {
			add("domain %s: DKIM selector %s names %q, which is not a Secret name", d.Name, k.Selector, k.SecretName)
		}
	}
	return errors.Join(errs...)
}

// Validate checks one TLS policy on its own, as Snapshot.Validate does for each; the
// operator runs it per TLSDeliveryPolicy before rendering.
func (p *TLSPolicy) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Direction != DirectionOutbound && p.Direction != DirectionInbound {
		add("tls policy %s: direction %q is not Outbound or Inbound", p.Source, p.Direction)
	}
	switch p.Mode {
	case ModeOpportunistic, ModeRequireTLS, ModeRequireVerifiedTLS:
	default:
		add("tls policy %s: mode %q is unknown", p.Source, p.Mode)
	}
	switch p.MinVersion {
	case "1.0", "1.1", "1.2", "1.3":
	default:
		add("tls policy %s: minVersion %q is unknown", p.Source, p.MinVersion)
	}
	for _, dst := range p.Destinations {
		if dst != "*" && !IsDomain(strings.TrimPrefix(dst, "*.")) {
			add("tls policy %s: destination %q is not a domain, *.domain or *", p.Source, dst)
		}
	}
	return errors.Join(errs...)
}

// IsDomain reports whether s is a lower-case DNS name with at least two labels.
func IsDomain(s string) bool {
	return len(s) <= 253 && strings.Contains(s, ".") && labels(s)
}

// IsDKIMSelector reports whether s is a DKIM selector as the API admits it: one or more
// lower-case DNS labels (RFC 6376 3.1), at most 63 characters in all, so that
// <selector>._domainkey.<domain> stays a short name.
func IsDKIMSelector(s string) bool {
	return len(s) <= 63 && labels(s)
}

// labels reports whether s is one or more dot-separated lower-case DNS labels (letters,
// digits and inner hyphens, 1 to 63 characters each).
func labels(s string) bool {
	if s == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// IsAddress reports whether s is a lower-case dot-atom address local@domain, the only
// form the API admits: no quotes, no '%' or '!' (routes to another host), no source
// routes. Every address it admits, the relay's own parser (directory.ParseMailbox)
// admits too; a test holds the two to that.
func IsAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || len(s) > 254 || !IsDomain(s[at+1:]) {
		return false
	}
	local := s[:at]
	if len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || strings.IndexByte("#$&*+/=?^_{|}~-", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Domainpart returns what follows the last '@' of addr.
func Domainpart(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// isSecretName reports whether s is a Kubernetes object name (a DNS subdomain), which
// is also safe as a file name.
func isSecretName(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' || s[len(s)-1] == '.' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return !strings.Contains(s, "..")
}
