package discovery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/test/testkit"
)

// ackingOperator plays the operator's side of the exchange in memory, by the contract of
// relay/discoverystate: it keeps each journal's watermark (the highest Seq merged),
// takes in only the observations above it, and acknowledges the watermark. How the
// operator then folds observations into its state is its own concern, tested in
// controllers/discovery/state.
type ackingOperator struct {
	t  *testing.T
	mu sync.Mutex
	// published are the batches as the replicas published them.
	published []discoverystate.Batch
	// merged are the observations taken in, each once, as "relay seq kind address time".
	merged    []string
	watermark map[string]uint64
	// dropAck simulates an operator that merged but crashed before acknowledging.
	dropAck bool
}

func newAckingOperator(t *testing.T) *ackingOperator {
	return &ackingOperator{t: t, watermark: map[string]uint64{}}
}

func (o *ackingOperator) Publish(_ context.Context, b discoverystate.Batch) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.published = append(o.published, b)
	if b.Version != discoverystate.BatchVersion || b.Journal == "" {
		o.t.Errorf("published a batch without version or journal: %+v", b)
	}
	for _, ob := range b.Observations {
		w := o.watermark[b.Journal]
		if ob.Seq <= w {
			continue // merged before: counting it again would count a message twice
		}
		if ob.Seq != w+1 {
			o.t.Errorf("journal %s of %s: seq %d follows %d; a gap loses observations", b.Journal, b.Relay, ob.Seq, w)
		}
		o.watermark[b.Journal] = ob.Seq
		o.merged = append(o.merged, seen(b.Relay, ob))
	}
	if o.dropAck {
		return 0, nil
	}
	return o.watermark[b.Journal], nil
}

// checkMerged fails t unless the operator took in exactly want, in order.
func (o *ackingOperator) checkMerged(t *testing.T, want []string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !slices.Equal(o.merged, want) {
		t.Fatalf("the operator took in\n%q\nwant\n%q", o.merged, want)
	}
}

func (o *ackingOperator) lastBatch() discoverystate.Batch {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.published[len(o.published)-1]
}

func seen(relay string, ob discoverystate.Observation) string {
	return fmt.Sprintf("%s %d %s %s %s", relay, ob.Seq, ob.Kind, ob.Address, ob.Time.UTC().Format(time.RFC3339))
}

func described(b discoverystate.Batch) []string {
	var out []string
	for _, ob := range b.Observations {
		out = append(out, seen(b.Relay, ob))
	}
	return out
}

// replica is one relay: its journal and its verifier.
type replica struct {
	journal  *Journal
	verifier *Verifier
	shipper  *Shipper
}

func startReplica(t *testing.T, dir, name string, clk *clock, op *ackingOperator) *replica {
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

func (r *replica) record(t *testing.T, kind discoverystate.Kind, addr string, at time.Time) {
	t.Helper()
	if err := r.journal.Record(kind, addr, at); err != nil {
		t.Fatal(err)
	}
}

func (r *replica) ship(t *testing.T) {
	t.Helper()
	if err := r.shipper.ShipOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReplicasPublishEachObservationOnce(t *testing.T) {
	downstream := testkit.Start(t)
	clk := newClock()
	op := newAckingOperator(t)
	a := startReplica(t, t.TempDir(), "relay-0", clk, op)
	b := startReplica(t, t.TempDir(), "relay-1", clk, op)
	if a.journal.ID() == b.journal.ID() {
		t.Fatalf("two replicas share journal identity %s: the operator would drop one's observations", a.journal.ID())
	}

	// Replica A verifies bob and delivers one clean message; replica B delivers two.
	d := domainFor("example.com", downstream)
	if got, _ := a.verifier.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v, want accept", got)
	}
	a.record(t, discoverystate.Delivered, "bob@example.com", clk.Now())
	t1 := clk.Now().Add(time.Hour)
	b.record(t, discoverystate.Delivered, "bob@example.com", t1)
	b.record(t, discoverystate.Delivered, "bob@example.com", t1.Add(time.Hour))
	a.ship(t)
	b.ship(t)
	want := []string{
		"relay-0 1 Verified bob@example.com 2026-03-01T12:00:00Z",
		"relay-0 2 Delivered bob@example.com 2026-03-01T12:00:00Z",
		"relay-1 1 Delivered bob@example.com 2026-03-01T13:00:00Z",
		"relay-1 2 Delivered bob@example.com 2026-03-01T14:00:00Z",
	}
	op.checkMerged(t, want)
	// Each replica learns its acknowledgement and forgets what was merged.
	for _, r := range []*replica{a, b} {
		if n := r.journal.Pending(); n != 0 {
			t.Fatalf("%d observations still pending after acknowledgement", n)
		}
	}

	// Publishing again sends nothing new, under the same journals.
	a.ship(t)
	if got := op.lastBatch(); got.Journal != a.journal.ID() || got.Relay != "relay-0" || len(got.Observations) != 0 {
		t.Fatalf("replica A published again %+v, want an empty batch of journal %s", got, a.journal.ID())
	}
	b.ship(t)
	if got := op.lastBatch(); got.Journal != b.journal.ID() || got.Relay != "relay-1" || len(got.Observations) != 0 {
		t.Fatalf("replica B published again %+v, want an empty batch of journal %s", got, b.journal.ID())
	}
	op.checkMerged(t, want) // a second round takes in nothing
}

func TestRestartLosesNothing(t *testing.T) {
	downstream := testkit.Start(t)
	clk := newClock()
	op := newAckingOperator(t)
	dir := t.TempDir()
	r := startReplica(t, dir, "relay-0", clk, op)
	id := r.journal.ID()
	d := domainFor("example.com", downstream)
	if got, _ := r.verifier.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v, want accept", got)
	}
	r.record(t, discoverystate.Delivered, "bob@example.com", clk.Now())
	r.record(t, discoverystate.Delivered, "bob@example.com", clk.Now())
	// The operator merges the first publication but its acknowledgement is lost; then
	// the relay stops before publishing again.
	op.dropAck = true
	r.ship(t)
	first := op.lastBatch()
	if n := r.journal.Pending(); n != 3 {
		t.Fatalf("%d observations pending without an acknowledgement, want 3", n)
	}
	r.verifier.Close()
	_ = r.journal.Close()
	if err := r.journal.Record(discoverystate.Delivered, "bob@example.com", clk.Now()); err == nil {
		t.Fatal("a closed journal accepted a record")
	}

	// After the restart the journal replays everything unacknowledged under the same
	// identity and numbers, so the operator skips what it merged and takes in only the
	// next clean message.
	op.dropAck = false
	clk.Advance(time.Hour)
	r = startReplica(t, dir, "relay-0", clk, op)
	if r.journal.ID() != id {
		t.Fatalf("journal identity %s after the restart, was %s", r.journal.ID(), id)
	}
	if n := r.journal.Pending(); n != 3 {
		t.Fatalf("%d observations replayed, want 3", n)
	}
	r.record(t, discoverystate.Delivered, "bob@example.com", clk.Now())
	r.ship(t)
	replayed := described(op.lastBatch())
	if len(replayed) != 4 || !slices.Equal(replayed[:3], described(first)) {
		t.Fatalf("published after the restart\n%q\nwant the first batch\n%q\nand the new observation",
			replayed, described(first))
	}
	want := []string{
		"relay-0 1 Verified bob@example.com 2026-03-01T12:00:00Z",
		"relay-0 2 Delivered bob@example.com 2026-03-01T12:00:00Z",
		"relay-0 3 Delivered bob@example.com 2026-03-01T12:00:00Z",
		"relay-0 4 Delivered bob@example.com 2026-03-01T13:00:00Z",
	}
	op.checkMerged(t, want)
	if n := r.journal.Pending(); n != 0 {
		t.Fatalf("%d observations pending, want none", n)
	}
}
