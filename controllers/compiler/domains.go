package compiler

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// compileDomains resolves domain claims (the oldest claim wins), validates each winner,
// and keeps the valid ones. Alias targets are resolved in a second pass, against every
// claim-winning domain of the namespace.
func (c *compilation) compileDomains() {
	sorted := slices.Clone(c.in.MailDomains)
	slices.SortFunc(sorted, func(a, b *relayv1alpha1.MailDomain) int { return older(a, b) })

	claims := c.updateClaims(sorted)
	owner := make(map[string]*relayv1alpha1.MailDomain, len(sorted))
	var candidates []*domainEntry
	for _, md := range sorted {
		v := c.verdict(KindMailDomain, md)
		if cl, ok := claims[md.Spec.Domain]; ok && cl.Namespace != md.Namespace {
			// Named without the other tenant's namespace or objects.
			reject(v, relayv1alpha1.ReasonDomainConflict,
				"domain %s is claimed by another namespace; a claim is released only when its namespace has had no MailDomain for the domain for a while, or by an admin", md.Spec.Domain)
			continue
		}
		claims[md.Spec.Domain] = Claim{Namespace: md.Namespace}
		if first, taken := owner[md.Spec.Domain]; taken {
			reject(v, relayv1alpha1.ReasonDomainConflict,
				"domain %s is already claimed by MailDomain %s, created earlier", md.Spec.Domain, nsName(first))
			continue
		}
		owner[md.Spec.Domain] = md
		d, err := buildDomain(md, c.in.DKIM[types.NamespacedName{Namespace: md.Namespace, Name: md.Name}])
		if err != nil {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "%s", err)
			continue
		}
		d.verdict = v
		candidates = append(candidates, d)
	}
	c.res.Claims = claims

	// Addresses that exist in each namespace, for alias targets.
	targets := map[string]map[string]bool{}
	for _, d := range candidates {
		ns := d.obj.Namespace
		if targets[ns] == nil {
			targets[ns] = map[string]bool{}
		}
		for a := range d.addresses {
			targets[ns][a] = true
		}
	}
	for _, d := range candidates {
		var missing []string
		for _, a := range d.entry.Aliases {
			if !targets[d.obj.Namespace][a.Target] {
				missing = append(missing, a.Target)
			}
		}
		if len(missing) > 0 {
			reject(d.verdict, relayv1alpha1.ReasonInvalidReference,
				"alias targets %s are not users or functional accounts of any MailDomain in namespace %s",
				strings.Join(missing, ", "), d.obj.Namespace)
			continue
		}
		c.domains[d.entry.Name] = d
		c.byNS[d.obj.Namespace] = append(c.byNS[d.obj.Namespace], d)
		c.byObject[ObjectKey{KindMailDomain, d.obj.Namespace, d.obj.Name}] = d
		d.verdict.Users = int32(len(d.entry.Users) + len(d.entry.FunctionalAccounts) + len(d.entry.Aliases))
		d.verdict.SecretProblem, d.verdict.RelaySecrets = c.relaySecrets(d.obj)
	}
}

// buildDomain converts one MailDomain, with the DKIM keys it signs with, and checks what admission cannot: addresses used
// twice across lists, and everything the relay's own validation would refuse.
func buildDomain(md *relayv1alpha1.MailDomain, dkim []snapshot.DKIMKey) (*domainEntry, error) {
	spec := md.Spec
	if !snapshot.IsDomain(spec.Domain) {
		return nil, fmt.Errorf("domain %q is not a lower-case DNS name", spec.Domain)
	}
	d := &domainEntry{
		obj:       md,
		addresses: map[string]bool{},
		senders:   map[string]bool{},
		entry: snapshot.Domain{
			Name:            spec.Domain,
			Source:          ref(md),
			RequireSMTPAuth: spec.RequireSMTPAuth,
		},
	}
	use := map[string]string{} // address -> what it is, to report double use
	claim := func(kind, addr string) error {
		if !snapshot.IsAddress(addr) || snapshot.Domainpart(addr) != spec.Domain {
			return fmt.Errorf("%s %q is not an address in %s", kind, addr, spec.Domain)
		}
		if prev, ok := use[addr]; ok {
			return fmt.Errorf("address %s is listed both as %s and as %s", addr, prev, kind)
		}
		use[addr] = kind
		return nil
	}
	for _, u := range spec.Users {
		if err := claim("a user", u.Address); err != nil {
			return nil, err
		}
		role := string(u.Role)
		if role == "" {
			role = string(relayv1alpha1.RoleEndUser)
		}
		d.entry.Users = append(d.entry.Users, snapshot.User{Address: u.Address, DisplayName: u.DisplayName, Role: role})
		d.addresses[u.Address] = true
	}
	for _, f := range spec.FunctionalAccounts {
		if err := claim("a functional account", f.Address); err != nil {
			return nil, err
		}
		d.entry.FunctionalAccounts = append(d.entry.FunctionalAccounts, f.Address)
		d.addresses[f.Address] = true
	}
	for _, a := range spec.Aliases {
		if err := claim("an alias", a.Address); err != nil {
			return nil, err
		}
		if !snapshot.IsAddress(a.Target) || a.Target == a.Address {
			return nil, fmt.Errorf("alias %s has a bad target %q", a.Address, a.Target)
		}
		d.entry.Aliases = append(d.entry.Aliases, snapshot.Alias{Address: a.Address, Target: a.Target})
	}
	for _, a := range spec.InvalidAddresses {
		if err := claim("an invalid address", a); err != nil {
			return nil, err
		}
		d.entry.InvalidAddresses = append(d.entry.InvalidAddresses, a)
	}
	for a, kind := range use {
		if kind != "an invalid address" {
			d.senders[a] = true
		}
	}
	for _, s := range spec.SendingServers {
		p, err := netip.ParsePrefix(s.CIDR)
		if err != nil {
			return nil, fmt.Errorf("sending server %q is not a CIDR network: %w", s.CIDR, err)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("sending server %s has host bits set; write %s", s.CIDR, p.Masked())
		}
		d.entry.SendingServers = append(d.entry.SendingServers, p.String())
	}
	if err := buildRoutes(md, &d.entry); err != nil {
		return nil, err
	}
	d.entry.DKIM = signingKeys(md, dkim)
	// The relay's own check of a domain, so that what it would refuse is refused here,
	// for this object alone, and never makes the whole snapshot invalid.
	if err := d.entry.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// finishDomains adds the accepted domains to the snapshot, once policies are attached.
func (c *compilation) finishDomains() {
	for _, d := range c.domains {
		c.res.Snapshot.Domains = append(c.res.Snapshot.Domains, d.entry)
		slices.Sort(d.verdict.Policies)
		accept(d.verdict, fmt.Sprintf("domain %s is in the relay config", d.entry.Name))
	}
}

// fingerprintDomains runs after the snapshot is normalized, so that list order in the
// spec does not change a fingerprint.
func (c *compilation) fingerprintDomains() {
	for _, e := range c.res.Snapshot.Domains {
		c.domains[e.Name].verdict.Fingerprint = fingerprint(e)
	}
}
