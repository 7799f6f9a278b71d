// Package tlspolicy chooses the TLS requirement of a delivery from the snapshot's
// TLSDeliveryPolicies and builds the client tls.Config that enforces it. A Matcher is
// compiled once per snapshot, so a lookup costs a few map probes (one per label of the
// destination) however many policies there are. It sits outside relay/internal because
// a Policy is part of relay/outbound's API, which the operator uses for its own mail.
package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Mode is a TLS requirement, one of the snapshot.Mode* constants.
type Mode string

// The TLS modes, strictest last.
const (
	Opportunistic      Mode = snapshot.ModeOpportunistic
	RequireTLS         Mode = snapshot.ModeRequireTLS
	RequireVerifiedTLS Mode = snapshot.ModeRequireVerifiedTLS
)

func (m Mode) rank() int {
	switch m {
	case RequireVerifiedTLS:
		return 2
	case RequireTLS:
		return 1
	}
	return 0
}

// Policy is the TLS requirement for one delivery.
type Policy struct {
	Mode Mode
	// MinVersion is a tls.VersionTLS* constant; zero leaves Go's default (TLS 1.2).
	MinVersion uint16
	// Roots verifies RequireVerifiedTLS peers; nil means the system roots.
	Roots *x509.CertPool
	// Source names the TLSDeliveryPolicy, empty for the default.
	Source string
}

// Default is the policy when none matches: opportunistic TLS with plaintext fallback.
var Default = Policy{Mode: Opportunistic}

// destIndex holds the policies of one direction and managed domain, by destination.
type destIndex struct {
	exact    map[string]*Policy
	wildcard map[string]*Policy // key: the suffix after "*."
	any      *Policy
}

type key struct{ direction, domain string }

// Matcher finds the policy for a delivery. It is immutable once compiled.
type Matcher struct {
	index map[key]*destIndex
}

var versions = map[string]uint16{
	"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13,
}

// Compile indexes policies. Inbound policies ignore Destinations: they govern delivery to
// the managed domain's own server. When two policies claim the same direction, domain and
// destination, the stricter mode wins, then the first by source name, so the outcome
// never depends on input order.
func Compile(policies []snapshot.TLSPolicy) (*Matcher, error) {
	m := &Matcher{index: make(map[key]*destIndex)}
	for _, sp := range policies {
		p := &Policy{Mode: Mode(sp.Mode), Source: sp.Source.String()}
		if p.Mode.rank() == 0 && p.Mode != Opportunistic {
			return nil, fmt.Errorf("tls policy %s: unknown mode %q", p.Source, sp.Mode)
		}
		if sp.MinVersion != "" {
			v, ok := versions[sp.MinVersion]
			if !ok {
				return nil, fmt.Errorf("tls policy %s: unknown minVersion %q", p.Source, sp.MinVersion)
			}
			p.MinVersion = v
		}
		if sp.CABundlePEM != "" {
			p.Roots = x509.NewCertPool()
			if !p.Roots.AppendCertsFromPEM([]byte(sp.CABundlePEM)) {
				return nil, fmt.Errorf("tls policy %s: caBundlePEM holds no certificate", p.Source)
			}
		}
		dests := sp.Destinations
		if sp.Direction == snapshot.DirectionInbound || len(dests) == 0 {
			dests = []string{"*"}
		}
		for _, d := range sp.Domains {
			k := key{sp.Direction, strings.ToLower(d)}
			idx := m.index[k]
			if idx == nil {
				idx = &destIndex{exact: map[string]*Policy{}, wildcard: map[string]*Policy{}}
				m.index[k] = idx
			}
			for _, dst := range dests {
				dst = strings.ToLower(dst)
				switch {
				case dst == "*":
					idx.any = pick(idx.any, p)
				case strings.HasPrefix(dst, "*."):
					idx.wildcard[dst[2:]] = pick(idx.wildcard[dst[2:]], p)
				default:
					idx.exact[dst] = pick(idx.exact[dst], p)
				}
			}
		}
	}
	return m, nil
}

func pick(old, p *Policy) *Policy {
	if old == nil || p.Mode.rank() > old.Mode.rank() ||
		p.Mode.rank() == old.Mode.rank() && p.Source < old.Source {
		return p
	}
	return old
}

// Lookup returns the policy for mail of managed domain domain travelling in direction
// (snapshot.DirectionOutbound or DirectionInbound) to destination, the recipient
// domain. An exact destination beats the longest matching "*.suffix", which beats "*";
// "*.example.com" covers subdomains of example.com, not example.com itself.
func (m *Matcher) Lookup(direction, domain, destination string) Policy {
	if m == nil {
		return Default
	}
	idx := m.index[key{direction, strings.ToLower(domain)}]
	if idx == nil {
		return Default
	}
	dst := strings.TrimSuffix(strings.ToLower(destination), ".")
	if p := idx.exact[dst]; p != nil {
		return *p
	}
	for rest := dst; ; {
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			break
		}
		rest = rest[dot+1:]
		if p := idx.wildcard[rest]; p != nil {
			return *p
		}
	}
	if idx.any != nil {
		return *idx.any
	}
	return Default
}
