package compiler

import (
	"time"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// Claim is a namespace's durable hold on a domain. The first namespace whose MailDomain
// names a domain claims it; the claim outlives that MailDomain, so a tenant that deletes
// and re-creates its object (as a GitOps re-sync does) keeps its domain, and a MailDomain
// waiting in another namespace cannot take the domain over in that moment. A claim is
// released only when its namespace has had no MailDomain for the domain for
// Input.ClaimReleaseAfter, or when an admin deletes it.
type Claim struct {
	Namespace string `json:"namespace"`
	// VacantSince is when the namespace was first seen without a MailDomain for the
	// domain; zero while it has one.
	VacantSince time.Time `json:"vacantSince,omitzero"`
}

// updateClaims carries the input's claims forward: a claim whose namespace still has a
// MailDomain for its domain stays held, one that lost it starts (or continues) its
// vacancy, and one vacant for ClaimReleaseAfter is released. New claims are added by
// compileDomains as it admits MailDomains.
func (c *compilation) updateClaims(domains []*relayv1alpha1.MailDomain) map[string]Claim {
	present := make(map[string]bool, len(domains))
	for _, md := range domains {
		present[md.Namespace+"\x00"+md.Spec.Domain] = true
	}
	claims := make(map[string]Claim, len(c.in.Claims))
	for domain, cl := range c.in.Claims {
		switch {
		case present[cl.Namespace+"\x00"+domain]:
			cl.VacantSince = time.Time{}
		case cl.VacantSince.IsZero():
			cl.VacantSince = c.in.Now
		}
		if !cl.VacantSince.IsZero() && c.in.Now.Sub(cl.VacantSince) >= c.in.ClaimReleaseAfter {
			continue
		}
		claims[domain] = cl
	}
	return claims
}

// NextClaimRelease is how long until the earliest vacant claim is released, so that the
// caller renders again then; zero when no claim is vacant.
func (r *Result) NextClaimRelease(now time.Time, releaseAfter time.Duration) time.Duration {
	var next time.Duration
	for _, cl := range r.Claims {
		if cl.VacantSince.IsZero() {
			continue
		}
		d := max(cl.VacantSince.Add(releaseAfter).Sub(now), time.Second)
		if next == 0 || d < next {
			next = d
		}
	}
	return next
}
