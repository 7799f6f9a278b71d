package compiler

import (
	"testing"
	"time"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// A domain stays with the namespace that claimed it while that namespace re-creates its
// MailDomain; a waiting claim elsewhere gets it only after the release period.
func TestClaimsOutliveTheirMailDomain(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	release := 24 * time.Hour
	owner := domain("owner", "shop", "shop.example", 1, users("jane@shop.example"))
	waiting := domain("waiting", "shop", "shop.example", 2, users("evil@shop.example"))

	first := must(t, Input{MailDomains: []*relayv1alpha1.MailDomain{owner, waiting}, Now: now, ClaimReleaseAfter: release})
	if cl := first.Claims["shop.example"]; cl.Namespace != "owner" || !cl.VacantSince.IsZero() {
		t.Fatalf("claim after the first render: %+v", cl)
	}

	// The owner deletes its MailDomain: the waiting one stays out, and the claim is vacant.
	gone := must(t, Input{MailDomains: []*relayv1alpha1.MailDomain{waiting}, Claims: first.Claims, Now: now.Add(time.Minute), ClaimReleaseAfter: release})
	if v := verdictOf(t, gone, KindMailDomain, "waiting", "shop"); v.Accepted || v.Reason != relayv1alpha1.ReasonDomainConflict {
		t.Fatalf("the waiting claim took the domain while its owner re-creates its object: %+v", v)
	}
	if len(gone.Snapshot.Domains) != 0 {
		t.Fatalf("the domain is served: %+v", gone.Snapshot.Domains)
	}
	if cl := gone.Claims["shop.example"]; cl.Namespace != "owner" || !cl.VacantSince.Equal(now.Add(time.Minute)) {
		t.Fatalf("claim while vacant: %+v", cl)
	}
	if d := gone.NextClaimRelease(now.Add(time.Minute), release); d != release {
		t.Errorf("next release in %s, want %s", d, release)
	}

	// The owner re-creates it (a newer object): it gets its domain back at once.
	recreated := domain("owner", "shop", "shop.example", 3, users("jane@shop.example"))
	back := must(t, Input{MailDomains: []*relayv1alpha1.MailDomain{waiting, recreated}, Claims: gone.Claims, Now: now.Add(2 * time.Minute), ClaimReleaseAfter: release})
	if v := verdictOf(t, back, KindMailDomain, "owner", "shop"); !v.Accepted {
		t.Fatalf("the owner did not get its domain back: %+v", v)
	}
	if v := verdictOf(t, back, KindMailDomain, "waiting", "shop"); v.Accepted {
		t.Fatalf("the younger claim from another namespace was accepted: %+v", v)
	}
	if cl := back.Claims["shop.example"]; !cl.VacantSince.IsZero() {
		t.Errorf("the claim is still vacant after the owner came back: %+v", cl)
	}

	// Vacant for the whole release period: the claim is released and the waiting
	// namespace claims the domain.
	released := must(t, Input{MailDomains: []*relayv1alpha1.MailDomain{waiting}, Claims: gone.Claims, Now: now.Add(time.Minute + release), ClaimReleaseAfter: release})
	if v := verdictOf(t, released, KindMailDomain, "waiting", "shop"); !v.Accepted {
		t.Fatalf("the waiting claim was not accepted after the release: %+v", v)
	}
	if cl := released.Claims["shop.example"]; cl.Namespace != "waiting" {
		t.Errorf("claim after the release: %+v", cl)
	}
}
