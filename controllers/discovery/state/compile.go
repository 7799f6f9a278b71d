package state

import (
	"github.com/postwarden/postwarden/relay/snapshot"
)

// PolicyFor returns what Merge needs to know about the snapshot's discovery policy
// name ("<namespace>/<name>"): its settings and the domains that name it. It reports
// false when the snapshot does not hold the policy (deleted, disabled or rejected).
func PolicyFor(s *snapshot.Snapshot, name string) (Policy, bool) {
	var p Policy
	found := false
	for _, dp := range s.DiscoveryPolicies {
		if dp.Name == name {
			p.DiscoveryPolicy, found = dp, true
			p.MaxAddressesPerDomain = dp.MaxAddressesPerDomain
		}
	}
	if !found {
		return Policy{}, false
	}
	for _, d := range s.Domains {
		if d.DiscoveryPolicy == name {
			p.Domains = append(p.Domains, d)
		}
	}
	return p, true
}

// Apply fills Domain.Discovered of every domain that names a policy, from that
// policy's state (states is keyed by policy name). Whatever the state holds, the result
// stays valid: an address the spec lists, an address outside the domain, a malformed
// address, or an alias without a valid target or whose target is outside the policy's
// own domains (a hand-edited state must not alias into another tenant's domain) is left
// out.
func Apply(s *snapshot.Snapshot, states map[string]State) {
	covered := map[string]map[string]bool{} // policy -> the domains that name it
	for _, d := range s.Domains {
		if d.DiscoveryPolicy == "" {
			continue
		}
		if covered[d.DiscoveryPolicy] == nil {
			covered[d.DiscoveryPolicy] = map[string]bool{}
		}
		covered[d.DiscoveryPolicy][d.Name] = true
	}
	for i := range s.Domains {
		d := &s.Domains[i]
		d.Discovered = nil
		st, ok := states[d.DiscoveryPolicy]
		if d.DiscoveryPolicy == "" || !ok {
			continue
		}
		listed := make(map[string]bool, len(d.Users)+len(d.FunctionalAccounts)+len(d.Aliases)+len(d.InvalidAddresses))
		for _, u := range d.Users {
			listed[u.Address] = true
		}
		for _, a := range d.FunctionalAccounts {
			listed[a] = true
		}
		for _, a := range d.Aliases {
			listed[a.Address] = true
		}
		for _, a := range d.InvalidAddresses {
			listed[a] = true
		}
		for _, a := range st.Discovered(d.Name) {
			if listed[a.Address] || !snapshot.IsAddress(a.Address) {
				continue
			}
			switch a.State {
			case snapshot.DiscoveredPending, snapshot.DiscoveredUser, snapshot.DiscoveredInvalid:
			case snapshot.DiscoveredAlias:
				if !snapshot.IsAddress(a.Target) || a.Target == a.Address || !covered[d.DiscoveryPolicy][snapshot.Domainpart(a.Target)] {
					continue
				}
			default:
				continue
			}
			d.Discovered = append(d.Discovered, a)
		}
	}
}
