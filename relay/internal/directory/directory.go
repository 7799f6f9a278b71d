// Package directory holds the lookups of a config snapshot that the SMTP session makes on
// every command (domains, managed addresses, credentials, sending servers), each answered
// in constant time. A Directory is built once per snapshot, as part of the relay's
// compiled view (relay/internal/compiled), and never changes; sessions pin the one
// current when they start.
package directory

import (
	"fmt"
	"net/netip"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Kind says what a managed address is.
type Kind uint8

const (
	// KindUnknown is an address of a managed domain that the snapshot does not list.
	KindUnknown Kind = iota
	KindUser
	KindFunctional
	KindAlias
	// KindInvalid is an address the snapshot marks invalid: mail to it is refused.
	KindInvalid
	// KindPending is an address SMTP Discovery verified with the domain's server but has
	// not yet seen often enough to count as a user: mail to it is accepted, but it is
	// not a sender address.
	KindPending
)

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindFunctional:
		return "functional"
	case KindAlias:
		return "alias"
	case KindInvalid:
		return "invalid"
	case KindPending:
		return "pending"
	}
	return "unknown"
}

// Entry is one managed address.
type Entry struct {
	Kind   Kind
	Domain *Domain
	// Target is the primary address of an alias.
	Target string
	// Role is the user's role (EndUser or SilentUser).
	Role string
	// Discovered says the entry was learned by SMTP Discovery rather than configured.
	Discovered bool
}

// Domain is a managed domain.
type Domain struct {
	Name            string
	Source          snapshot.ObjectRef
	RequireSMTPAuth bool
	SendingServers  []netip.Prefix
	// InboundDelivery is the domain's own server; nil for an outbound-only domain.
	InboundDelivery *snapshot.Endpoint
	// OutboundRoute takes the domain's outbound mail instead of MX; nil: MX (or the
	// relay's --smarthost).
	OutboundRoute   *snapshot.Endpoint
	DiscoveryPolicy string
}

// Credential is an SMTP AUTH identity with its parsed password hash.
type Credential struct {
	Username string
	Hash     snapshot.PasswordHash
	Domain   *Domain
	// AllowedSenders holds lower-case addresses; nil means every user, functional account
	// and alias of Domain.
	AllowedSenders map[string]struct{}
	Label          string
	Source         snapshot.ObjectRef
	// Limits are the credential's sending limits; nil: none.
	Limits *snapshot.Limits
}

// Directory is immutable once built; share it freely between goroutines.
type Directory struct {
	hash        string
	domains     map[string]*Domain
	addresses   map[string]Entry
	credentials map[string]*Credential
	servers     prefixTable
}

// Empty returns a directory with no domains and no credentials: a relay that has not
// loaded a snapshot yet refuses everything.
func Empty() *Directory {
	return &Directory{
		domains:     map[string]*Domain{},
		addresses:   map[string]Entry{},
		credentials: map[string]*Credential{},
	}
}

// Build compiles s, which must have passed snapshot.Validate. It fails on what Validate
// does not catch but a lookup table cannot hold: an address listed twice, under one kind
// or two.
func Build(s *snapshot.Snapshot) (*Directory, error) {
	naddr := 0
	for i := range s.Domains {
		d := &s.Domains[i]
		naddr += len(d.Users) + len(d.FunctionalAccounts) + len(d.Aliases) + len(d.InvalidAddresses) + len(d.Discovered)
	}
	dir := &Directory{
		hash:        s.Hash,
		domains:     make(map[string]*Domain, len(s.Domains)),
		addresses:   make(map[string]Entry, naddr),
		credentials: make(map[string]*Credential, len(s.Credentials)),
	}
	for i := range s.Domains {
		if err := dir.addDomain(&s.Domains[i]); err != nil {
			return nil, err
		}
	}
	for i := range s.Credentials {
		c := &s.Credentials[i]
		if _, dup := dir.credentials[c.Username]; dup {
			return nil, fmt.Errorf("credential %q appears twice", c.Username)
		}
		hash, err := snapshot.ParsePasswordHash(c.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("credential %q: %w", c.Username, err)
		}
		dom := dir.domains[c.Domain]
		if dom == nil {
			return nil, fmt.Errorf("credential %q: domain %q is not in the snapshot", c.Username, c.Domain)
		}
		cred := &Credential{Username: c.Username, Hash: hash, Domain: dom, Label: c.Label, Source: c.Source, Limits: c.Limits}
		if len(c.AllowedSenders) > 0 {
			cred.AllowedSenders = make(map[string]struct{}, len(c.AllowedSenders))
			for _, a := range c.AllowedSenders {
				m, err := ParseMailbox(a)
				if err != nil {
					return nil, fmt.Errorf("credential %q: allowed sender %q: %w", c.Username, a, err)
				}
				cred.AllowedSenders[m.Key()] = struct{}{}
			}
		}
		dir.credentials[c.Username] = cred
	}
	return dir, nil
}

func (dir *Directory) addDomain(d *snapshot.Domain) error {
	if _, dup := dir.domains[d.Name]; dup {
		return fmt.Errorf("domain %q appears twice", d.Name)
	}
	dom := &Domain{
		Name:            d.Name,
		Source:          d.Source,
		RequireSMTPAuth: d.RequireSMTPAuth,
		InboundDelivery: d.InboundDelivery,
		OutboundRoute:   d.OutboundRoute,
		DiscoveryPolicy: d.DiscoveryPolicy,
	}
	for _, cidr := range d.SendingServers {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return fmt.Errorf("domain %s: sending server %q: %w", d.Name, cidr, err)
		}
		dom.SendingServers = append(dom.SendingServers, p)
		dir.servers.add(p, d.Name)
	}
	dir.domains[d.Name] = dom
	add := func(addr string, e Entry) error {
		e.Domain = dom
		if prev, dup := dir.addresses[addr]; dup {
			return fmt.Errorf("domain %s: address %q is listed as %s and as %s", d.Name, addr, prev.Kind, e.Kind)
		}
		dir.addresses[addr] = e
		return nil
	}
	for _, u := range d.Users {
		if err := add(u.Address, Entry{Kind: KindUser, Role: u.Role}); err != nil {
			return err
		}
	}
	for _, f := range d.FunctionalAccounts {
		if err := add(f, Entry{Kind: KindFunctional}); err != nil {
			return err
		}
	}
	for _, a := range d.Aliases {
		if err := add(a.Address, Entry{Kind: KindAlias, Target: a.Target}); err != nil {
			return err
		}
	}
	for _, a := range d.InvalidAddresses {
		if err := add(a, Entry{Kind: KindInvalid}); err != nil {
			return err
		}
	}
	// Discovered addresses never override the configured lists above, and the first
	// entry of an address wins.
	for _, a := range d.Discovered {
		if _, known := dir.addresses[a.Address]; known {
			continue
		}
		e := Entry{Domain: dom, Discovered: true, Role: a.Role, Target: a.Target}
		switch a.State {
		case snapshot.DiscoveredUser:
			e.Kind = KindUser
		case snapshot.DiscoveredAlias:
			e.Kind = KindAlias
		case snapshot.DiscoveredInvalid:
			e.Kind = KindInvalid
		case snapshot.DiscoveredPending:
			e.Kind = KindPending
		default:
			return fmt.Errorf("domain %s: discovered address %q has unknown state %q", d.Name, a.Address, a.State)
		}
		dir.addresses[a.Address] = e
	}
	return nil
}

// Hash is the snapshot hash the directory was built from ("" for Empty).
func (dir *Directory) Hash() string { return dir.hash }

// Domain returns the managed domain name (lower case), or nil.
func (dir *Directory) Domain(name string) *Domain { return dir.domains[name] }

// Lookup returns what a lower-case address (Mailbox.Key) is. An address of a managed
// domain that is not listed has KindUnknown and its Domain set; an address of any other
// domain has a nil Domain.
func (dir *Directory) Lookup(key string) Entry {
	if e, ok := dir.addresses[key]; ok {
		return e
	}
	return Entry{Kind: KindUnknown, Domain: dir.domains[snapshot.Domainpart(key)]}
}

// Credential returns the credential with exactly this username, or nil.
func (dir *Directory) Credential(username string) *Credential { return dir.credentials[username] }

// SendingServerDomains returns the names of the domains whose sending servers contain ip,
// sorted, whether or not they require SMTP AUTH.
func (dir *Directory) SendingServerDomains(ip netip.Addr) []string { return dir.servers.lookup(ip) }

// MaySend reports whether the credential may use the lower-case address key as envelope
// sender and From: its AllowedSenders when set, otherwise any user, functional account
// or alias of its domain.
func (dir *Directory) MaySend(c *Credential, key string) bool {
	if c.AllowedSenders != nil {
		_, ok := c.AllowedSenders[key]
		return ok
	}
	e := dir.Lookup(key)
	switch e.Kind {
	case KindUser, KindFunctional, KindAlias:
		return e.Domain == c.Domain
	}
	return false
}

// Counts returns the number of domains, managed addresses and credentials.
func (dir *Directory) Counts() (domains, addresses, credentials int) {
	return len(dir.domains), len(dir.addresses), len(dir.credentials)
}
