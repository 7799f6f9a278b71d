package controllers

import (
	"slices"
	"sync"

	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// renderLedger is the config reconciler's record of what it wrote: the snapshots in
// the order written, each object's verdict, and the first snapshot that held the
// object's current content. Only the config reconciler writes it; the status
// reconcilers, the relay view and SMTP Discovery read it.
//
// It lives in memory: after a restart the first render rebuilds it, and a relay that
// reports a snapshot hash this operator has not written counts as not up to date until
// it catches up.
type renderLedger struct {
	mu sync.Mutex
	// seq numbers the distinct snapshots written, from 1; hashSeq maps a hash to the
	// latest seq that wrote it (the same content may come back).
	seq     int64
	hash    string
	hashSeq map[string]int64
	// writing is the hash being written, before it becomes hash.
	writing string
	objects map[compiler.ObjectKey]*objectState
	// snap is the last snapshot written; never modified once stored.
	snap *snapshot.Snapshot
}

// objectState is one object's verdict and when it entered the relay config.
type objectState struct {
	verdict *compiler.Verdict
	// firstSeq is the first snapshot holding the object's current content (its
	// verdict's fingerprint); 0 when the object is not in the snapshot.
	firstSeq  int64
	firstHash string
}

func newRenderLedger() *renderLedger {
	return &renderLedger{hashSeq: map[string]int64{}, objects: map[compiler.ObjectKey]*objectState{}}
}

// record notes a written snapshot and returns the objects whose status may change.
func (l *renderLedger) record(res *compiler.Result) []compiler.ObjectKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snap = res.Snapshot
	if res.Snapshot.Hash != l.hash {
		l.seq++
		l.hash = res.Snapshot.Hash
		l.hashSeq[l.hash] = l.seq
	}
	var changed []compiler.ObjectKey
	for key, v := range res.Verdicts {
		old := l.objects[key]
		next := &objectState{verdict: v}
		if v.Accepted {
			next.firstSeq, next.firstHash = l.seq, l.hash
			if old != nil && old.firstSeq > 0 && old.verdict.Fingerprint == v.Fingerprint {
				next.firstSeq, next.firstHash = old.firstSeq, old.firstHash
			}
		}
		l.objects[key] = next
		if old == nil || !sameVerdict(old.verdict, v) || old.firstSeq != next.firstSeq {
			changed = append(changed, key)
		}
	}
	for key := range l.objects {
		if _, ok := res.Verdicts[key]; !ok {
			delete(l.objects, key)
		}
	}
	return changed
}

func sameVerdict(a, b *compiler.Verdict) bool {
	return a.Generation == b.Generation && a.Accepted == b.Accepted && a.Reason == b.Reason &&
		a.Message == b.Message && a.Fingerprint == b.Fingerprint && a.Users == b.Users &&
		a.Credentials == b.Credentials && a.RelaySecrets == b.RelaySecrets && a.SecretProblem == b.SecretProblem &&
		slices.Equal(a.Policies, b.Policies) && slices.Equal(a.MailDomains, b.MailDomains)
}

// object returns the object's entry, or false when the last render has not seen
// generation yet (the config reconciler sends the object again when it has).
func (l *renderLedger) object(key compiler.ObjectKey, generation int64) (objectState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[key]
	if o == nil || o.verdict.Generation != generation {
		return objectState{}, false
	}
	return *o, true
}

// oldestSeq returns the oldest of the snapshots with these hashes: 0 when one of them
// is a hash this operator did not write.
func (l *renderLedger) oldestSeq(hashes []string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldest := int64(-1)
	for _, h := range hashes {
		if seq := l.hashSeq[h]; oldest < 0 || seq < oldest {
			oldest = seq
		}
	}
	return max(oldest, 0)
}

// readinessChanges returns the objects whose readiness differs between two views of
// the relays.
func (l *renderLedger) readinessChanges(before, after relayView) []compiler.ObjectKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var changed []compiler.ObjectKey
	for key, o := range l.objects {
		if o.firstSeq > 0 && readinessOf(o.firstSeq, before) != readinessOf(o.firstSeq, after) {
			changed = append(changed, key)
		}
	}
	return changed
}

// keys returns the objects of kind that have a verdict.
func (l *renderLedger) keys(kind compiler.Kind) []compiler.ObjectKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []compiler.ObjectKey
	for k := range l.objects {
		if k.Kind == kind {
			keys = append(keys, k)
		}
	}
	return keys
}

// isOwnHash reports whether h is the snapshot last written or being written.
func (l *renderLedger) isOwnHash(h string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return h != "" && (h == l.hash || h == l.writing)
}

// setWriting notes the hash about to be written, so the watch on the config Secrets
// does not take the operator's own write for someone else's.
func (l *renderLedger) setWriting(h string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writing = h
}

// Snapshot returns the last snapshot written, nil before the first render. SMTP
// Discovery reads the policies and the spec's address lists from it.
func (l *renderLedger) Snapshot() *snapshot.Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap
}
