package controllers

import (
	"slices"
	"sync"

	"github.com/postwarden/postwarden/controllers/compiler"
)

// relayView summarises the live relay replicas.
type relayView struct {
	// Live counts replicas whose Lease has not expired.
	Live int
	// MinSeq is the oldest snapshot a live replica enforces: 0 when a replica reports a
	// hash this operator did not write, or when there is no live replica.
	MinSeq int64
	// Hashes are the distinct hashes the live replicas report, sorted.
	Hashes []string
}

// readiness is what an object's Ready condition says of the relays.
type readiness int

const (
	// enforcedEverywhere: every live relay enforces a snapshot holding the object.
	enforcedEverywhere readiness = iota
	// noLiveRelay: no relay reports at all.
	noLiveRelay
	// propagating: some live relay still enforces an older snapshot.
	propagating
)

// readinessOf classes an object first rendered in the snapshot with seq firstSeq.
func readinessOf(firstSeq int64, v relayView) readiness {
	switch {
	case v.Live == 0:
		return noLiveRelay
	case v.MinSeq >= firstSeq:
		return enforcedEverywhere
	default:
		return propagating
	}
}

// relayTracker owns the relay view. The relays reconciler sets it from the Leases; the
// config reconciler refreshes it after each write, since a hash the relays already
// report may only now have a place in the ledger.
type relayTracker struct {
	mu     sync.Mutex
	view   relayView
	ledger *renderLedger
}

// set records the relays' reports (as hashes) and returns the objects whose Ready
// condition changes with them: only those are sent to their reconcilers, so a Lease
// renewal or a new report does not touch every object.
func (t *relayTracker) set(live int, hashes []string) []compiler.ObjectKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.setLocked(live, hashes)
}

func (t *relayTracker) setLocked(live int, hashes []string) []compiler.ObjectKey {
	hashes = slices.Compact(slices.Sorted(slices.Values(hashes)))
	view := relayView{Live: live, Hashes: hashes}
	if live > 0 {
		view.MinSeq = t.ledger.oldestSeq(hashes)
	}
	before := t.view
	t.view = view
	if before.Live == view.Live && before.MinSeq == view.MinSeq {
		return nil
	}
	return t.ledger.readinessChanges(before, view)
}

// refresh recomputes the view from the last reports, after a new snapshot.
func (t *relayTracker) refresh() []compiler.ObjectKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.setLocked(t.view.Live, t.view.Hashes)
}

func (t *relayTracker) current() relayView {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view
}
