package state

import (
	"slices"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func days(n float64) time.Time { return t0.Add(time.Duration(n * float64(day))) }

type policyOpt func(*Policy)

func testPolicy(opts ...policyOpt) Policy {
	p := Policy{
		DiscoveryPolicy: snapshot.DiscoveryPolicy{Name: "mail/discovery", Threshold: 3, WindowDays: 30, ExpiryDays: 21, DefaultRole: "SilentUser"},
		Domains: []snapshot.Domain{
			{Name: "example.com", Users: []snapshot.User{{Address: "jane.doe@example.com"}},
				InvalidAddresses: []string{"old@example.com"}, FunctionalAccounts: []string{"sales@example.com"}},
			{Name: "example.net"},
		},
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

// obs builds a batch of one journal with consecutive sequence numbers from seq.
func obs(journal string, seq uint64, items ...discoverystate.Observation) discoverystate.Batch {
	for i := range items {
		items[i].Seq = seq + uint64(i)
	}
	return discoverystate.Batch{Version: discoverystate.BatchVersion, Journal: journal, Observations: items}
}

func o(k discoverystate.Kind, addr string, at time.Time) discoverystate.Observation {
	return discoverystate.Observation{Kind: k, Address: addr, Time: at}
}

func find(st State, addr string) *Address {
	for i := range st.Addresses {
		if st.Addresses[i].Address == addr {
			return &st.Addresses[i]
		}
	}
	return nil
}

func TestLifecycle(t *testing.T) {
	type step struct {
		batch discoverystate.Batch
		at    time.Time
	}
	tests := map[string]struct {
		policy     Policy
		steps      []step
		addr       string
		wantState  string // "" means not tracked
		wantTarget string
		wantRole   string
	}{
		"a verified address is pending": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0))), days(0)}},
			addr:   "bob@example.com", wantState: snapshot.DiscoveredPending,
		},
		"threshold clean messages in the window make a user with the default role": {
			policy: testPolicy(),
			steps: []step{{obs("j", 1,
				o(discoverystate.Verified, "bob@example.com", days(0)),
				o(discoverystate.Delivered, "bob@example.com", days(1)),
				o(discoverystate.Delivered, "bob@example.com", days(2)),
				o(discoverystate.Delivered, "bob@example.com", days(3))), days(3)}},
			addr: "bob@example.com", wantState: snapshot.DiscoveredUser, wantRole: "SilentUser",
		},
		"clean messages outside the window do not count": {
			policy: testPolicy(func(p *Policy) { p.WindowDays = 5; p.ExpiryDays = 60 }),
			steps: []step{
				{obs("j", 1, o(discoverystate.Delivered, "bob@example.com", days(0)), o(discoverystate.Delivered, "bob@example.com", days(1))), days(1)},
				{obs("j", 3, o(discoverystate.Delivered, "bob@example.com", days(10))), days(10)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredPending,
		},
		"an address not promoted within expiryDays becomes invalid": {
			policy: testPolicy(),
			steps: []step{
				{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0)), o(discoverystate.Delivered, "bob@example.com", days(1))), days(1)},
				{discoverystate.Batch{}, days(21)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredInvalid,
		},
		"an address is still pending just before expiry": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0))), days(20.9)}},
			addr:   "bob@example.com", wantState: snapshot.DiscoveredPending,
		},
		"expired addresses become users when the policy says so": {
			policy: testPolicy(func(p *Policy) { p.ExpiredAddressesBecomeUsers = true }),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0))), days(22)}},
			addr:   "bob@example.com", wantState: snapshot.DiscoveredUser, wantRole: "SilentUser",
		},
		"an outbound sender becomes a user with autoAddOutboundUsers": {
			policy: testPolicy(func(p *Policy) { p.AutoAddOutboundUsers = true }),
			steps:  []step{{obs("j", 1, o(discoverystate.OutboundSender, "bob@example.com", days(0))), days(0)}},
			addr:   "bob@example.com", wantState: snapshot.DiscoveredUser, wantRole: "SilentUser",
		},
		"an outbound sender is ignored without autoAddOutboundUsers": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.OutboundSender, "bob@example.com", days(0))), days(0)}},
			addr:   "bob@example.com",
		},
		"an outbound sender revives an invalid address": {
			policy: testPolicy(func(p *Policy) { p.AutoAddOutboundUsers = true }),
			steps: []step{
				{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0))), days(25)},
				{obs("j", 2, o(discoverystate.OutboundSender, "bob@example.com", days(26))), days(26)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredUser, wantRole: "SilentUser",
		},
		"a matching local part on another covered domain makes an alias": {
			policy: testPolicy(func(p *Policy) { p.AutoAddAliases = true }),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "jane.doe@example.net", days(0))), days(0)}},
			addr:   "jane.doe@example.net", wantState: snapshot.DiscoveredAlias, wantTarget: "jane.doe@example.com",
		},
		"a discovered user is an alias target too": {
			policy: testPolicy(func(p *Policy) { p.AutoAddAliases = true; p.AutoAddOutboundUsers = true }),
			steps: []step{
				{obs("j", 1, o(discoverystate.OutboundSender, "bob@example.net", days(0))), days(0)},
				{obs("j", 2, o(discoverystate.Verified, "bob@example.com", days(1))), days(1)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredAlias, wantTarget: "bob@example.net",
		},
		"no alias without autoAddAliases": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "jane.doe@example.net", days(0))), days(0)}},
			addr:   "jane.doe@example.net", wantState: snapshot.DiscoveredPending,
		},
		"a refusal forgets a pending address": {
			policy: testPolicy(),
			steps: []step{
				{obs("j", 1, o(discoverystate.Verified, "bob@example.com", days(0))), days(0)},
				{obs("j", 2, o(discoverystate.Refused, "bob@example.com", days(1))), days(1)},
			},
			addr: "bob@example.com",
		},
		"a refusal of an untracked address is not kept": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Refused, "nobody@example.com", days(0))), days(0)}},
			addr:   "nobody@example.com",
		},
		"the spec's invalid address is never tracked": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "old@example.com", days(0))), days(0)}},
			addr:   "old@example.com",
		},
		"an address the spec starts listing is dropped": {
			policy: testPolicy(),
			steps: []step{
				{obs("j", 1, o(discoverystate.Verified, "sales@example.com", days(0))), days(0)},
			},
			addr: "sales@example.com",
		},
		"an address the snapshot could not carry is ignored": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "a%b@example.com", days(0))), days(0)}},
			addr:   "a%b@example.com",
		},
		"addresses of domains the policy does not cover are ignored": {
			policy: testPolicy(),
			steps:  []step{{obs("j", 1, o(discoverystate.Verified, "bob@example.org", days(0))), days(0)}},
			addr:   "bob@example.org",
		},
		"a replayed batch counts once": {
			policy: testPolicy(),
			steps: []step{
				{obs("j", 1, o(discoverystate.Delivered, "bob@example.com", days(0)), o(discoverystate.Delivered, "bob@example.com", days(1))), days(1)},
				{obs("j", 1, o(discoverystate.Delivered, "bob@example.com", days(0)), o(discoverystate.Delivered, "bob@example.com", days(1))), days(1)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredPending,
		},
		"two journals add up": {
			policy: testPolicy(),
			steps: []step{
				{obs("relay-a", 1, o(discoverystate.Delivered, "bob@example.com", days(0)), o(discoverystate.Delivered, "bob@example.com", days(1))), days(1)},
				{obs("relay-b", 1, o(discoverystate.Delivered, "bob@example.com", days(2))), days(2)},
			},
			addr: "bob@example.com", wantState: snapshot.DiscoveredUser, wantRole: "SilentUser",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var st State
			for _, s := range tc.steps {
				var batches []discoverystate.Batch
				if s.batch.Journal != "" {
					batches = append(batches, s.batch)
				}
				st = Merge(st, batches, tc.policy, s.at)
			}
			a := find(st, tc.addr)
			if tc.wantState == "" {
				if a != nil {
					t.Fatalf("%s is tracked as %+v, want untracked", tc.addr, *a)
				}
				return
			}
			if a == nil {
				t.Fatalf("%s is not tracked, want %s (state %+v)", tc.addr, tc.wantState, st)
			}
			if a.State != tc.wantState || a.Target != tc.wantTarget || a.Role != tc.wantRole {
				t.Fatalf("%s: got state %q target %q role %q, want %q %q %q",
					tc.addr, a.State, a.Target, a.Role, tc.wantState, tc.wantTarget, tc.wantRole)
			}
		})
	}
}

func TestMergeLeavesInputAlone(t *testing.T) {
	p := testPolicy()
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, o(discoverystate.Delivered, "bob@example.com", days(0)))}, p, days(0))
	before, _ := EncodeState(st)
	_ = Merge(st, []discoverystate.Batch{obs("j", 2, o(discoverystate.Delivered, "bob@example.com", days(1)))}, p, days(1))
	after, _ := EncodeState(st)
	if string(before) != string(after) {
		t.Fatalf("Merge changed its input:\n%s\n%s", before, after)
	}
}

func TestMergeBoundsEachDomain(t *testing.T) {
	p := testPolicy(func(p *Policy) { p.MaxAddressesPerDomain = 3; p.AutoAddOutboundUsers = true })
	b := obs("j", 1,
		o(discoverystate.OutboundSender, "user@example.com", days(0)),
		o(discoverystate.Verified, "p1@example.com", days(1)),
		o(discoverystate.Verified, "p2@example.com", days(2)),
		o(discoverystate.Verified, "p3@example.com", days(3)),
		o(discoverystate.Verified, "p4@example.com", days(4)),
		o(discoverystate.Verified, "other@example.net", days(0)))
	st := Merge(State{}, []discoverystate.Batch{b}, p, days(4))
	var got []string
	for _, a := range st.Addresses {
		got = append(got, a.Address)
	}
	want := []string{"other@example.net", "p3@example.com", "p4@example.com", "user@example.com"}
	if !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v (the user and the most recently seen pending ones)", got, want)
	}
}

func TestJournalWatermarksExpire(t *testing.T) {
	p := testPolicy()
	st := Merge(State{}, []discoverystate.Batch{obs("gone", 1, o(discoverystate.Verified, "bob@example.com", days(0)))}, p, days(0))
	if st.Journals["gone"].Seq != 1 {
		t.Fatalf("watermark %+v, want seq 1", st.Journals["gone"])
	}
	st = Merge(st, nil, p, days(91))
	if _, ok := st.Journals["gone"]; ok {
		t.Fatal("the watermark of a journal silent for 91 days is still kept")
	}
}
