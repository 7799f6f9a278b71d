package controllers

import (
	"context"
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// state is what the config reconciler learned, shared with the per-kind reconcilers
// that turn it into status. It lives in memory: after a restart the first render
// rebuilds it, and a relay that reports a snapshot hash this operator has not written
// counts as not up to date until it catches up.
type state struct {
	mu sync.Mutex
	// seq numbers the distinct snapshots written, from 1; hashSeq maps a hash to the
	// latest seq that wrote it (the same content may come back).
	seq  int64
	hash string
	// writing is the hash being written, before it becomes hash.
	writing string
	hashSeq map[string]int64
	objects map[compiler.ObjectKey]*objectState
	relays  relayView
	cert    certView
	// snap is the last snapshot written; the discovery loop reads the policies and the
	// spec's address lists from it. Never modified once stored.
	snap *snapshot.Snapshot

	// events feed each kind's reconciler, keyed by kind.
	events map[compiler.Kind]chan event.GenericEvent
}

// objectState is one object's verdict and when it entered the relay config.
type objectState struct {
	verdict *compiler.Verdict
	// firstSeq is the first snapshot holding the object's current content (its
	// verdict's fingerprint); 0 when the object is not in the snapshot.
	firstSeq  int64
	firstHash string
}

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

// certView is the state of the relay certificate.
type certView struct {
	// Managed says the operator owns a Certificate; Missing says cert-manager's CRDs are
	// not installed.
	Managed, Missing bool
	SecretName       string
	Ready            bool
	Message          string
	NotAfter         *metav1.Time
}

func newState() *state {
	s := &state{hashSeq: map[string]int64{}, objects: map[compiler.ObjectKey]*objectState{}, events: map[compiler.Kind]chan event.GenericEvent{}}
	for _, k := range []compiler.Kind{compiler.KindMailDomain, compiler.KindSMTPCredential, compiler.KindDiscoveryPolicy, compiler.KindTLSDeliveryPolicy} {
		s.events[k] = make(chan event.GenericEvent, 1024)
	}
	return s
}

// applyResult records a written snapshot and returns the objects whose status may
// change.
func (s *state) applyResult(res *compiler.Result) []compiler.ObjectKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = res.Snapshot
	if res.Snapshot.Hash != s.hash {
		s.seq++
		s.hash = res.Snapshot.Hash
		s.hashSeq[s.hash] = s.seq
	}
	var changed []compiler.ObjectKey
	for key, v := range res.Verdicts {
		old := s.objects[key]
		next := &objectState{verdict: v}
		if v.Accepted {
			next.firstSeq, next.firstHash = s.seq, s.hash
			if old != nil && old.firstSeq > 0 && old.verdict.Fingerprint == v.Fingerprint {
				next.firstSeq, next.firstHash = old.firstSeq, old.firstHash
			}
		}
		s.objects[key] = next
		if old == nil || !sameVerdict(old.verdict, v) || old.firstSeq != next.firstSeq {
			changed = append(changed, key)
		}
	}
	for key := range s.objects {
		if _, ok := res.Verdicts[key]; !ok {
			delete(s.objects, key)
		}
	}
	return changed
}

func sameVerdict(a, b *compiler.Verdict) bool {
	return a.Generation == b.Generation && a.Accepted == b.Accepted && a.Reason == b.Reason &&
		a.Message == b.Message && a.Fingerprint == b.Fingerprint && a.Users == b.Users &&
		a.Credentials == b.Credentials && slices.Equal(a.Policies, b.Policies) && slices.Equal(a.MailDomains, b.MailDomains)
}

// objectStatus is what a per-kind reconciler needs to write an object's status.
type objectStatus struct {
	verdict   compiler.Verdict
	firstHash string
	// enforced says every live relay enforces a snapshot holding the object's content.
	enforced bool
	relays   relayView
	cert     certView
}

// status returns the object's status inputs, or false when the last render has not
// seen generation yet (the config reconciler will send the object again when it has).
func (s *state) status(key compiler.ObjectKey, generation int64) (objectStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[key]
	if o == nil || o.verdict.Generation != generation {
		return objectStatus{}, false
	}
	return objectStatus{
		verdict:   *o.verdict,
		firstHash: o.firstHash,
		enforced:  o.firstSeq > 0 && readinessOf(o.firstSeq, s.relays) == enforcedEverywhere,
		relays:    s.relays,
		cert:      s.cert,
	}, true
}

// setRelays records the relays' reports (as hashes) and returns the objects whose Ready
// condition changes with them: only those are sent to their reconcilers, so a Lease
// renewal or a new report does not touch every object.
func (s *state) setRelays(live int, hashes []string) []compiler.ObjectKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	view := relayView{Live: live, Hashes: hashes}
	if live > 0 {
		view.MinSeq = -1
		for _, h := range hashes {
			seq := s.hashSeq[h]
			if view.MinSeq < 0 || seq < view.MinSeq {
				view.MinSeq = seq
			}
		}
		view.MinSeq = max(view.MinSeq, 0)
	}
	old := s.relays
	s.relays = view
	if old.Live == view.Live && old.MinSeq == view.MinSeq {
		return nil
	}
	var changed []compiler.ObjectKey
	for key, o := range s.objects {
		if o.firstSeq > 0 && readinessOf(o.firstSeq, old) != readinessOf(o.firstSeq, view) {
			changed = append(changed, key)
		}
	}
	return changed
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

// refreshRelays recomputes MinSeq after a new snapshot, since a hash the relays already
// report may now have a seq.
func (s *state) refreshRelays() []compiler.ObjectKey {
	s.mu.Lock()
	live, hashes := s.relays.Live, slices.Clone(s.relays.Hashes)
	s.mu.Unlock()
	return s.setRelays(live, hashes)
}

func (s *state) setCert(c certView) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	same := s.cert.Managed == c.Managed && s.cert.Missing == c.Missing && s.cert.SecretName == c.SecretName &&
		s.cert.Ready == c.Ready && s.cert.Message == c.Message && timesEqual(s.cert.NotAfter, c.NotAfter)
	s.cert = c
	return !same
}

func timesEqual(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// keys returns the objects of kind (all kinds when kind is empty) that have a verdict.
func (s *state) keys(kind compiler.Kind) []compiler.ObjectKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []compiler.ObjectKey
	for k := range s.objects {
		if kind == "" || k.Kind == kind {
			keys = append(keys, k)
		}
	}
	return keys
}

// notify sends each key to its kind's reconciler. It blocks while a queue is full,
// which paces the caller, and gives up when ctx ends.
func (s *state) notify(ctx context.Context, keys []compiler.ObjectKey) {
	for _, k := range keys {
		obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
		select {
		case s.events[k.Kind] <- event.GenericEvent{Object: obj}:
		case <-ctx.Done():
			return
		}
	}
}

// isOwnHash reports whether h is the snapshot last written or being written.
func (s *state) isOwnHash(h string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return h != "" && (h == s.hash || h == s.writing)
}

func (s *state) setWriting(h string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing = h
}

// snapshot returns the last snapshot written, nil before the first render.
func (s *state) snapshot() *snapshot.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}
