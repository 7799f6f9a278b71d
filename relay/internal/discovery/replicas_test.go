package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// mergingOperator plays the operator's part in memory: it merges every published batch
// into one policy state and acknowledges what the state's watermark covers.
type mergingOperator struct {
	mu     sync.Mutex
	policy state.Policy
	now    func() time.Time
	state  state.State
	// dropAck simulates an operator that merged but crashed before acknowledging.
	dropAck bool
}

func (o *mergingOperator) Publish(_ context.Context, b discoverystate.Batch) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state = state.Merge(o.state, []discoverystate.Batch{b}, o.policy, o.now())
	if o.dropAck {
		return 0, nil
	}
	return o.state.Journals[b.Journal].Seq, nil
}

func (o *mergingOperator) address(addr string) *state.Address {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range o.state.Addresses {
		if a.Address == addr {
			return &a
		}
	}
	return nil
}

// replica is one relay: its journal and its verifier.
type replica struct {
	journal  *Journal
	verifier *Verifier
	shipper  *Shipper
}

func startReplica(t *testing.T, dir, name string, clk *clock, op *mergingOperator) *replica {
	t.Helper()
	j, err := OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return &replica{
		journal:  j,
		verifier: newVerifier(t, Options{Recorder: j, Now: clk.Now}),
		shipper:  &Shipper{Journal: j, Publisher: op, Relay: name},
	}
}

func testPolicy() state.Policy {
	return state.Policy{
		DiscoveryPolicy: snapshot.DiscoveryPolicy{Name: "mail/discovery", Threshold: 3, WindowDays: 30, ExpiryDays: 21},
		Domains:         []snapshot.Domain{{Name: "example.com"}},
	}
}

func TestTwoReplicasShareStateThroughTheMerge(t *testing.T) {
	downstream := testkit.Start(t)
	clk := newClock()
	op := &mergingOperator{policy: testPolicy(), now: clk.Now}
	a := startReplica(t, t.TempDir(), "relay-0", clk, op)
	b := startReplica(t, t.TempDir(), "relay-1", clk, op)
	d := domainFor("example.com", downstream)
	ctx := context.Background()

	// Replica A verifies bob and delivers one clean message; replica B delivers two.
	if got, _ := a.verifier.VerifyRecipient(ctx, d, "bob@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v, want accept", got)
	}
	record := func(r *replica, kind discoverystate.Kind, addr string) {
		t.Helper()
		if err := r.journal.Record(kind, addr, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	record(a, discoverystate.Delivered, "bob@example.com")
	for range 2 {
		clk.Advance(time.Hour)
		record(b, discoverystate.Delivered, "bob@example.com")
	}
	if err := a.shipper.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := op.address("bob@example.com"); got == nil || got.State != snapshot.DiscoveredPending {
		t.Fatalf("after replica A's batch: %+v, want pending", got)
	}
	if err := b.shipper.ShipOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := op.address("bob@example.com"); got == nil || got.State != snapshot.DiscoveredUser {
		t.Fatalf("after both batches: %+v, want a user (3 clean messages across replicas)", got)
	}
	// Each replica learns its acknowledgement and forgets what was merged.
	for _, r := range []*replica{a, b} {
		if n := r.journal.Pending(); n != 0 {
			t.Fatalf("%d observations still pending after acknowledgement", n)
		}
	}
	// Publishing again changes nothing: no double counting.
	before := op.state
	_ = a.shipper.ShipOnce(ctx)
	_ = b.shipper.ShipOnce(ctx)
	if got := op.address("bob@example.com"); got.State != snapshot.DiscoveredUser || len(op.state.Addresses) != len(before.Addresses) {
		t.Fatalf("a second round changed the state: %+v", op.state)
	}
}

func TestRestartLosesNothing(t *testing.T) {
	downstream := testkit.Start(t)
	clk := newClock()
	op := &mergingOperator{policy: testPolicy(), now: clk.Now}
	dir := t.TempDir()
	r := startReplica(t, dir, "relay-0", clk, op)
	d := domainFor("example.com", downstream)
	if got, _ := r.verifier.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v, want accept", got)
	}
	for range 2 {
		if err := r.journal.Record(discoverystate.Delivered, "bob@example.com", clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The operator merges the first publication but its acknowledgement is lost; then
	// the relay stops before publishing again.
	op.dropAck = true
	if err := r.shipper.ShipOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.verifier.Close()
	_ = r.journal.Close()
	if err := r.journal.Record(discoverystate.Delivered, "bob@example.com", clk.Now()); err == nil {
		t.Fatal("a closed journal accepted a record")
	}

	// After the restart the journal replays everything unacknowledged; the merge
	// skips what it already has, and the next clean message makes bob a user.
	op.dropAck = false
	r = startReplica(t, dir, "relay-0", clk, op)
	if n := r.journal.Pending(); n != 3 {
		t.Fatalf("%d observations replayed, want 3", n)
	}
	if err := r.journal.Record(discoverystate.Delivered, "bob@example.com", clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := r.shipper.ShipOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := op.address("bob@example.com")
	if got == nil || got.State != snapshot.DiscoveredUser {
		t.Fatalf("after restart: %+v, want a user", got)
	}
	if r.journal.Pending() != 0 {
		t.Fatalf("%d observations pending, want none", r.journal.Pending())
	}
}

func TestExpiredAddressIsRejectedEverywhere(t *testing.T) {
	clk := newClock()
	op := &mergingOperator{policy: testPolicy(), now: clk.Now}
	r := startReplica(t, t.TempDir(), "relay-0", clk, op)
	if err := r.journal.Record(discoverystate.Verified, "bob@example.com", clk.Now()); err != nil {
		t.Fatal(err)
	}
	_ = r.shipper.ShipOnce(context.Background())
	clk.Advance(21 * 24 * time.Hour)
	_ = r.shipper.ShipOnce(context.Background())
	got := op.address("bob@example.com")
	if got == nil || got.State != snapshot.DiscoveredInvalid {
		t.Fatalf("after expiry: %+v, want invalid", got)
	}
	// What the operator compiles into the snapshot for every replica.
	disc := op.state.Discovered("example.com")
	if len(disc) != 1 || disc[0].State != snapshot.DiscoveredInvalid {
		t.Fatalf("snapshot entries %+v, want bob invalid", disc)
	}
}
