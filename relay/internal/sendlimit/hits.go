package sendlimit

import (
	"slices"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// hitsKept is how long a refusal stays reported.
const hitsKept = time.Hour

// Hits remembers which credentials were refused for which limit lately, for the status
// Lease (snapshot.AnnotationLimitHits). It is safe for concurrent use.
type Hits struct {
	mu   sync.Mutex
	hits map[hitKey]snapshot.LimitHit
}

type hitKey struct {
	username string
	limit    Limit
}

// Record notes that username (of the SMTPCredential source) was refused for limit at.
func (h *Hits) Record(username string, source snapshot.ObjectRef, limit Limit, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hits == nil {
		h.hits = map[hitKey]snapshot.LimitHit{}
	}
	h.hits[hitKey{username, limit}] = snapshot.LimitHit{Credential: source, Username: username, Limit: limit.String(), At: at}
}

// Recent returns the refusals of the last hour, newest first, at most
// snapshot.MaxLimitHits, and forgets older ones.
func (h *Hits) Recent(now time.Time) []snapshot.LimitHit {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []snapshot.LimitHit
	for k, hit := range h.hits {
		if now.Sub(hit.At) > hitsKept {
			delete(h.hits, k)
			continue
		}
		out = append(out, hit)
	}
	slices.SortFunc(out, func(a, b snapshot.LimitHit) int { return b.At.Compare(a.At) })
	return out[:min(len(out), snapshot.MaxLimitHits)]
}
