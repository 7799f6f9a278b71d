package state

import (
	"reflect"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestApplyCompilesAValidSnapshot(t *testing.T) {
	s := &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Domains: []snapshot.Domain{
			{Name: "example.com", DiscoveryPolicy: "mail/discovery", Users: []snapshot.User{{Address: "jane@example.com"}}},
			{Name: "example.net", DiscoveryPolicy: "mail/discovery"},
			{Name: "example.org"},
		},
		DiscoveryPolicies: []snapshot.DiscoveryPolicy{{Name: "mail/discovery", Threshold: 3, WindowDays: 30, ExpiryDays: 21}},
	}
	p, ok := PolicyFor(s, "mail/discovery")
	if !ok || len(p.Domains) != 2 || p.Threshold != 3 {
		t.Fatalf("PolicyFor: %+v, %v", p, ok)
	}
	if _, ok := PolicyFor(s, "mail/other"); ok {
		t.Fatal("PolicyFor found a policy the snapshot does not hold")
	}
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1,
		o(discoverystate.Verified, "bob@example.com", days(0)),
		o(discoverystate.Verified, "ann@example.net", days(0)),
		o(discoverystate.Verified, "eve@example.org", days(0)))}, p, days(0))
	// State written by hand (or by an older operator) that the snapshot must not carry.
	st.Addresses = append(st.Addresses,
		Address{Address: "jane@example.com", State: snapshot.DiscoveredInvalid},
		Address{Address: "x@example.com", State: snapshot.DiscoveredAlias, Target: "x@example.com"},
		Address{Address: "y@example.com", State: "Weird"},
		// An alias into a domain the policy does not cover (another tenant's).
		Address{Address: "ceo@example.com", State: snapshot.DiscoveredAlias, Target: "ceo@example.org"},
		// An alias across the policy's own domains is what auto-added aliases are.
		Address{Address: "ann@example.com", State: snapshot.DiscoveredAlias, Target: "ann@example.net"},
	)
	Apply(s, map[string]State{"mail/discovery": st})
	want := map[string][]snapshot.DiscoveredAddress{
		"example.com": {{Address: "bob@example.com", State: snapshot.DiscoveredPending},
			{Address: "ann@example.com", State: snapshot.DiscoveredAlias, Target: "ann@example.net"}},
		"example.net": {{Address: "ann@example.net", State: snapshot.DiscoveredPending}},
		"example.org": nil,
	}
	for _, d := range s.Domains {
		if !reflect.DeepEqual(d.Discovered, want[d.Name]) {
			t.Errorf("%s: discovered %+v, want %+v", d.Name, d.Discovered, want[d.Name])
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the compiled snapshot is invalid: %v", err)
	}
}
