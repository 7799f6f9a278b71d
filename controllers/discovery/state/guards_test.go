package state

import (
	"fmt"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestCatchAllDomainLearnsNothingNew(t *testing.T) {
	p := testPolicy()
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1,
		o(discoverystate.Verified, "known@example.com", days(0)),
		o(discoverystate.CatchAll, "pw-probe-1f2e@example.com", days(1)),
		o(discoverystate.Verified, "guessed@example.com", days(1)),
		o(discoverystate.Delivered, "other@example.com", days(1)),
		o(discoverystate.Delivered, "known@example.com", days(1)),
		o(discoverystate.Verified, "bob@example.net", days(1)),
	)}, p, days(1))
	if find(st, "guessed@example.com") != nil || find(st, "other@example.com") != nil {
		t.Errorf("a catch-all domain's callouts and deliveries created addresses: %+v", st.Addresses)
	}
	if a := find(st, "known@example.com"); a == nil || len(a.Clean) != 1 {
		t.Errorf("an address known before the detection should keep counting clean messages: %+v", a)
	}
	if find(st, "pw-probe-1f2e@example.com") != nil {
		t.Error("the probe address itself was recorded")
	}
	if find(st, "bob@example.net") == nil {
		t.Error("another domain of the policy stopped learning")
	}
	if got := st.CatchAllDomains(); fmt.Sprint(got) != "[example.com]" {
		t.Errorf("CatchAllDomains = %v, want [example.com]", got)
	}

	// Relays probe again while the server accepts everything; once they stop finding it
	// catch-all, the mark lapses after the window and learning resumes.
	later := days(1).Add(CatchAllWindow + day)
	st = Merge(st, []discoverystate.Batch{obs("j", 7, o(discoverystate.Verified, "new@example.com", later))}, p, later)
	if len(st.CatchAllDomains()) != 0 {
		t.Errorf("the catch-all mark outlived its window: %v", st.CatchAll)
	}
	if find(st, "new@example.com") == nil {
		t.Error("learning did not resume after the catch-all mark lapsed")
	}
}

func TestCatchAllOfUncoveredDomainIsIgnored(t *testing.T) {
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, o(discoverystate.CatchAll, "x@elsewhere.org", days(0)))}, testPolicy(), days(0))
	if len(st.CatchAll) != 0 {
		t.Errorf("CatchAll = %v, want nothing for a domain the policy does not cover", st.CatchAll)
	}
}

func TestUsersStopAtTheDomainLimit(t *testing.T) {
	p := testPolicy(func(p *Policy) { p.MaxAddressesPerDomain = 2; p.Threshold = 1; p.AutoAddOutboundUsers = true })
	var items []discoverystate.Observation
	for i := range 4 {
		a := fmt.Sprintf("u%d@example.com", i)
		items = append(items, o(discoverystate.Verified, a, days(0)), o(discoverystate.Delivered, a, days(0)))
	}
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, items...)}, p, days(0))
	st = Merge(st, []discoverystate.Batch{obs("j", 9, o(discoverystate.OutboundSender, "sender@example.com", days(0)))}, p, days(0))
	c := st.Counts()
	if c.Users != 2 {
		t.Errorf("users = %d, want the limit, 2 (%+v)", c.Users, st.Addresses)
	}
	if a := find(st, "sender@example.com"); a != nil && a.State == snapshot.DiscoveredUser {
		t.Error("an outbound sender was made a user beyond the limit")
	}
	if got := st.LimitedDomains(p.MaxAddressesPerDomain); fmt.Sprint(got) != "[example.com]" {
		t.Errorf("LimitedDomains = %v, want [example.com]", got)
	}
	// Which two: the first in address order, whatever the map order.
	for range 5 {
		again := Merge(State{}, []discoverystate.Batch{obs("j", 1, items...)}, p, days(0))
		if fmt.Sprint(again.Addresses) != fmt.Sprint(st.Addresses) {
			t.Fatal("the merge at the limit is not deterministic")
		}
	}
	// Held-back addresses expire as Invalid rather than wait forever.
	st = Merge(st, nil, p, days(float64(p.ExpiryDays)+1))
	if c := st.Counts(); c.Users != 2 || c.Pending != 0 {
		t.Errorf("after expiry: %+v, want 2 users and no pending", c)
	}
}
