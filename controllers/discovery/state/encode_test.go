package state

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

func TestStateRoundTripsThroughParts(t *testing.T) {
	p := testPolicy()
	var items []discoverystate.Observation
	for i := range 500 {
		items = append(items, o(discoverystate.Delivered, fmt.Sprintf("user%03d@example.com", i), days(0)))
	}
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, items...)}, p, days(0))
	data, err := EncodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Shard(st, 4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("got %d parts, want several", len(parts))
	}
	for i, part := range parts {
		if len(part) > 4096 || !bytes.HasSuffix(part, []byte("\n")) {
			t.Fatalf("part %d: %d bytes, ends %q; want at most 4096, whole lines", i, len(part), part[len(part)-1:])
		}
	}
	// Parts may be read in any order.
	slices.Reverse(parts)
	back, err := DecodeState(parts...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Fatal("decoded state differs from the encoded one")
	}
	again, _ := EncodeState(back)
	if !bytes.Equal(again, data) {
		t.Fatal("encoding is not stable")
	}
}

func TestShardChangesOnlyThePartOfAChangedAddress(t *testing.T) {
	p := testPolicy()
	var items []discoverystate.Observation
	for i := range 500 {
		items = append(items, o(discoverystate.Verified, fmt.Sprintf("user%03d@example.com", i), days(0)))
	}
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, items...)}, p, days(0))
	before, err := Shard(st, 8192, 1)
	if err != nil {
		t.Fatal(err)
	}
	next := Merge(st, []discoverystate.Batch{obs("j", 501, o(discoverystate.Delivered, "user042@example.com", days(1)))}, p, days(1))
	after, err := Shard(next, 8192, len(before))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d parts, then %d", len(before), len(after))
	}
	changed := []int{}
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			changed = append(changed, i)
		}
	}
	// Part 0 holds the header, whose watermark moved; the address's part changed too.
	want := []int{0, PartOf("user042@example.com", len(before))}
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(changed, want) {
		t.Fatalf("parts %v changed, want %v", changed, want)
	}
}

func TestDecodeRejectsOtherVersions(t *testing.T) {
	tests := map[string]string{
		"an unknown state version is refused": `{"version":"relay.postwarden.dev/discovery-state/v9","policy":"a/b"}` + "\n",
		"an empty state is refused":           "",
		"a state without a header is refused": `{"address":"a@example.com","state":"User"}` + "\n",
		"a malformed address line is refused": `{"version":"` + StateVersion + `","policy":"a/b"}` + "\n{nope\n",
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeState([]byte(data)); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
}

func TestCountsAndRecent(t *testing.T) {
	p := testPolicy(func(p *Policy) { p.AutoAddOutboundUsers = true })
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1,
		o(discoverystate.Verified, "a@example.com", days(0)),
		o(discoverystate.OutboundSender, "b@example.com", days(1)),
		o(discoverystate.Verified, "c@example.net", days(2)))}, p, days(2))
	if got := st.Counts(); got != (Counts{Pending: 2, Users: 1}) {
		t.Fatalf("counts %+v", got)
	}
	if r := st.Recent(1); len(r) != 1 || r[0].Address != "c@example.net" {
		t.Fatalf("recent %+v, want c@example.net", r)
	}
	if d := st.Discovered("example.net"); len(d) != 1 || d[0].Address != "c@example.net" || d[0].State != "Pending" {
		t.Fatalf("discovered for example.net: %+v", d)
	}
}
