package compiler

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// resolveDomains returns the accepted domains that refs name in namespace, and the names
// that do not resolve.
func (c *compilation) resolveDomains(namespace string, refs []relayv1alpha1.MailDomainReference) (found []*domainEntry, missing []string) {
	for _, r := range refs {
		if d := c.byObject[ObjectKey{KindMailDomain, namespace, r.Name}]; d != nil {
			found = append(found, d)
		} else {
			missing = append(missing, r.Name)
		}
	}
	return found, missing
}

func domainNames(ds []*domainEntry) []string {
	names := make([]string, 0, len(ds))
	for _, d := range ds {
		names = append(names, d.entry.Name)
	}
	slices.Sort(names)
	return names
}

// compileDiscoveryPolicies gives each domain at most one DiscoveryPolicy: the oldest
// enabled policy that names it. A younger policy naming an already covered domain is
// left out whole, with reason PolicyConflict.
func (c *compilation) compileDiscoveryPolicies() {
	sorted := slices.Clone(c.in.DiscoveryPolicies)
	slices.SortFunc(sorted, func(a, b *relayv1alpha1.DiscoveryPolicy) int { return older(a, b) })

	coveredBy := map[string]*relayv1alpha1.DiscoveryPolicy{}
	for _, p := range sorted {
		v := c.verdict(KindDiscoveryPolicy, p)
		if p.Spec.Enabled != nil && !*p.Spec.Enabled {
			v.Accepted = true
			v.Reason = relayv1alpha1.ReasonDisabled
			v.Message = "discovery is switched off: unknown recipients are rejected with 550 5.1.1"
			v.Fingerprint = fingerprint("disabled")
			continue
		}
		found, missing := c.resolveDomains(p.Namespace, p.Spec.MailDomainRefs)
		if len(missing) > 0 {
			reject(v, relayv1alpha1.ReasonInvalidReference,
				"MailDomains %s do not exist in namespace %s or are not in the relay config", strings.Join(missing, ", "), p.Namespace)
			continue
		}
		var conflicts []string
		for _, d := range found {
			if other := coveredBy[d.entry.Name]; other != nil {
				conflicts = append(conflicts, fmt.Sprintf("%s (covered by DiscoveryPolicy %s, created earlier)", d.entry.Name, other.Name))
			}
		}
		if len(conflicts) > 0 {
			reject(v, relayv1alpha1.ReasonPolicyConflict, "a MailDomain may have one DiscoveryPolicy: %s", strings.Join(conflicts, "; "))
			continue
		}
		entry := discoveryEntry(p)
		for _, d := range found {
			coveredBy[d.entry.Name] = p
			d.entry.DiscoveryPolicy = entry.Name
			d.verdict.Policies = append(d.verdict.Policies, "DiscoveryPolicy/"+p.Name)
		}
		c.res.Snapshot.DiscoveryPolicies = append(c.res.Snapshot.DiscoveryPolicies, entry)
		v.MailDomains = domainNames(found)
		accept(v, fmt.Sprintf("in effect for %s", strings.Join(v.MailDomains, ", ")))
		v.Fingerprint = fingerprint(entry, v.MailDomains)
	}
}

// compileReportCredential adds the operator's report credential, allowed to send as the
// report sender of every policy in the snapshot. Without a policy it is left out: there is
// nothing to report, and a credential needs a domain.
func (c *compilation) compileReportCredential() {
	rc := c.in.ReportCredential
	if rc == nil || rc.Username == "" || len(c.res.Snapshot.DiscoveryPolicies) == 0 {
		return
	}
	if _, err := snapshot.ParsePasswordHash(rc.PasswordHash); err != nil {
		return
	}
	senders := map[string]bool{}
	for _, p := range c.res.Snapshot.DiscoveryPolicies {
		var domains []string
		for _, d := range c.domains {
			if d.entry.DiscoveryPolicy == p.Name {
				domains = append(domains, d.entry.Name)
			}
		}
		if s := ReportSender(domains); s != "" {
			senders[s] = true
		}
	}
	list := sortedKeys(senders)
	if len(list) == 0 {
		return
	}
	for _, cr := range c.res.Snapshot.Credentials {
		if cr.Username == rc.Username {
			return // an SMTPCredential holds the name: never share an identity
		}
	}
	c.res.Snapshot.Credentials = append(c.res.Snapshot.Credentials, snapshot.Credential{
		Username:       rc.Username,
		PasswordHash:   rc.PasswordHash,
		Domain:         snapshot.Domainpart(list[0]),
		AllowedSenders: list,
		Label:          "SMTP Discovery reports",
		Source:         rc.Source,
	})
}

func discoveryEntry(p *relayv1alpha1.DiscoveryPolicy) snapshot.DiscoveryPolicy {
	s := p.Spec
	e := snapshot.DiscoveryPolicy{
		Name:                        nsName(p),
		Threshold:                   orDefault(int(s.DetectionThreshold), 3),
		WindowDays:                  orDefault(int(s.DetectionWindowDays), 30),
		ExpiryDays:                  orDefault(int(s.ExpiryDays), 21),
		ExpiredAddressesBecomeUsers: s.ExpiredAddressesBecomeUsers,
		AutoAddAliases:              s.AutoAddAliases,
		AutoAddOutboundUsers:        s.AutoAddOutboundUsers,
		DefaultRole:                 string(s.DefaultRole),
		MaxAddressesPerDomain:       int(s.MaxAddressesPerDomain),
		ReportRecipients:            slices.Sorted(slices.Values(s.ReportRecipients)),
	}
	if e.DefaultRole == "" {
		e.DefaultRole = string(relayv1alpha1.RoleEndUser)
	}
	if len(e.ReportRecipients) > 0 {
		e.ReportDay, e.ReportTime = "Monday", "08:00"
		if rs := s.ReportSchedule; rs != nil {
			e.ReportDay = cmpOr(rs.DayOfWeek, e.ReportDay)
			e.ReportTime = cmpOr(rs.TimeOfDay, e.ReportTime)
		}
	}
	return e
}

// compileTLSPolicies resolves each TLSDeliveryPolicy's domains (for Outbound with no
// mailDomainRefs, every accepted MailDomain of its namespace), inlines its CA bundle, and
// refuses overlaps: a (direction, domain, destination) triple belongs to the oldest policy.
func (c *compilation) compileTLSPolicies() {
	sorted := slices.Clone(c.in.TLSPolicies)
	slices.SortFunc(sorted, func(a, b *relayv1alpha1.TLSDeliveryPolicy) int { return older(a, b) })

	claimedBy := map[string]*relayv1alpha1.TLSDeliveryPolicy{}
	for _, p := range sorted {
		v := c.verdict(KindTLSDeliveryPolicy, p)
		s := p.Spec
		direction := cmpOr(string(s.Direction), snapshot.DirectionOutbound)

		var found []*domainEntry
		if len(s.MailDomainRefs) == 0 && direction == snapshot.DirectionOutbound {
			found = c.byNS[p.Namespace]
			if len(found) == 0 {
				reject(v, relayv1alpha1.ReasonInvalidReference, "namespace %s has no MailDomain in the relay config for the policy to apply to", p.Namespace)
				continue
			}
		} else {
			var missing []string
			if found, missing = c.resolveDomains(p.Namespace, s.MailDomainRefs); len(missing) > 0 || len(found) == 0 {
				reject(v, relayv1alpha1.ReasonInvalidReference,
					"MailDomains %s do not exist in namespace %s or are not in the relay config", strings.Join(missing, ", "), p.Namespace)
				continue
			}
		}
		destinations := slices.Sorted(slices.Values(s.Destinations))
		if direction == snapshot.DirectionInbound {
			destinations = nil
		} else if len(destinations) == 0 {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "an Outbound policy needs at least one destination")
			continue
		}

		entry := snapshot.TLSPolicy{
			Source:       ref(p),
			Direction:    direction,
			Domains:      domainNames(found),
			Destinations: destinations,
			Mode:         cmpOr(string(s.Mode), snapshot.ModeOpportunistic),
			MinVersion:   cmpOr(string(s.MinTLSVersion), "1.2"),
		}
		if r := s.CABundleSecretRef; r != nil {
			key := SecretKeyRef{Namespace: p.Namespace, Name: r.Name, Key: cmpOr(r.Key, "ca.crt")}
			bundle, ok := c.in.CABundles[key]
			if !ok {
				reject(v, relayv1alpha1.ReasonInvalidReference, "Secret %s has no key %s in namespace %s", key.Name, key.Key, key.Namespace)
				continue
			}
			if err := checkCABundle(bundle); err != nil {
				reject(v, relayv1alpha1.ReasonInvalidSpec, "Secret %s key %s: %s", key.Name, key.Key, err)
				continue
			}
			entry.CABundlePEM = bundle
		}

		// The relay's own check of a policy: one it would refuse is rejected here alone.
		if err := entry.Validate(); err != nil {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "%s", err)
			continue
		}

		claims := make([]string, 0, len(entry.Domains)*max(1, len(destinations)))
		var conflicts []string
		for _, dom := range entry.Domains {
			for _, dst := range cmpOrSlice(destinations, []string{"(own server)"}) {
				claim := direction + "\x00" + dom + "\x00" + dst
				if other := claimedBy[claim]; other != nil {
					conflicts = append(conflicts, fmt.Sprintf("%s for %s (TLSDeliveryPolicy %s, created earlier)", dst, dom, other.Name))
				}
				claims = append(claims, claim)
			}
		}
		if len(conflicts) > 0 {
			reject(v, relayv1alpha1.ReasonPolicyConflict, "another %s policy already matches %s", direction, strings.Join(conflicts, "; "))
			continue
		}
		for _, claim := range claims {
			claimedBy[claim] = p
		}
		for _, d := range found {
			d.verdict.Policies = append(d.verdict.Policies, "TLSDeliveryPolicy/"+p.Name)
		}
		c.res.Snapshot.TLSPolicies = append(c.res.Snapshot.TLSPolicies, entry)
		v.MailDomains = entry.Domains
		accept(v, fmt.Sprintf("%s %s in effect for %s", direction, entry.Mode, strings.Join(entry.Domains, ", ")))
		v.Fingerprint = fingerprint(entry)
	}
}

// checkCABundle requires at least one PEM certificate and nothing that fails to parse.
func checkCABundle(bundle string) error {
	rest := []byte(bundle)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a PEM block of type %s; only CERTIFICATE is allowed", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("holds no PEM certificate")
	}
	return nil
}

// compileCertificate points the relay at its certificate's Secret and lists the names it
// must cover: the relay's own, and every accepted domain's submission hostnames.
func (c *compilation) compileCertificate() {
	names := map[string]bool{}
	for _, h := range c.in.RelayHostnames {
		names[h] = true
	}
	for _, d := range c.domains {
		for _, h := range d.obj.Spec.SubmissionHostnames {
			names[h] = true
		}
	}
	c.res.Hostnames = sortedKeys(names)
	if c.in.CertificateSecret != "" {
		c.res.Snapshot.Certificates = []snapshot.Certificate{{SecretName: c.in.CertificateSecret, Hostnames: c.res.Hostnames}}
	}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func cmpOrSlice(v, def []string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}
