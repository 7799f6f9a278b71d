package spool

import (
	"container/heap"
	"math"
	"time"
)

// entry is all the index keeps per message: no envelope, no recipients, no body.
type entry struct {
	id   string
	next int64 // NextAttempt in Unix nanoseconds
	size int64
	pos  int // position in the heap
	// updated says the current state is in ID.json, written by Update, rather than
	// in the message file.
	updated bool
	// mark is the message file's attempt marker, at markerAt: whoever reads the state
	// applies it.
	mark     marker
	markerAt int64
	// announcing: accepted, but its accept's announce has not returned yet (see
	// AcceptSealed), so it is not due.
	announcing bool

	tally // for Summary: pending recipients, attempt in progress
}

// index maps ids to entries and orders them by next attempt in a binary heap, so
// NextDue is O(1), an insert, update or removal O(log n), and Due(limit) O(limit log limit).
type index struct {
	byID map[string]*entry
	heap entryHeap
}

func newIndex() index { return index{byID: make(map[string]*entry)} }

// timeKey turns a NextAttempt into the heap key; the zero time means "now".
func timeKey(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// heldKey is the heap key of a held message: later than any NextAttempt, so Due never
// returns it and it sinks to the bottom of the heap, out of the runner's way.
const heldKey = math.MaxInt64

// keyOf is m's heap key.
func keyOf(m Message) int64 {
	if m.Held {
		return heldKey
	}
	return timeKey(m.NextAttempt)
}

func (x *index) put(id string, next, size int64) {
	if e, ok := x.byID[id]; ok {
		e.next, e.size = next, size
		heap.Fix(&x.heap, e.pos)
		return
	}
	e := &entry{id: id, next: next, size: size}
	x.byID[id] = e
	heap.Push(&x.heap, e)
}

func (x *index) remove(id string) {
	e, ok := x.byID[id]
	if !ok {
		return
	}
	heap.Remove(&x.heap, e.pos)
	delete(x.byID, id)
}

func (x *index) min() *entry {
	if len(x.heap) == 0 {
		return nil
	}
	return x.heap[0]
}

// due returns up to limit ids with next <= now in heap order, without popping: it
// walks the heap tree best-first, keeping a small frontier heap of candidate nodes.
func (x *index) due(now int64, limit int) []string {
	if limit <= 0 || len(x.heap) == 0 {
		return nil
	}
	var ids []string
	frontier := posHeap{h: x.heap, pos: []int{0}}
	for len(frontier.pos) > 0 && len(ids) < limit {
		p := heap.Pop(&frontier).(int)
		e := x.heap[p]
		if e.next > now {
			continue // its subtree is later still
		}
		if !e.announcing {
			ids = append(ids, e.id)
		}
		for _, c := range []int{2*p + 1, 2*p + 2} {
			if c < len(x.heap) {
				heap.Push(&frontier, c)
			}
		}
	}
	return ids
}

// less orders by next attempt, then id: ids sort by acceptance time.
func less(a, b *entry) bool {
	if a.next != b.next {
		return a.next < b.next
	}
	return a.id < b.id
}

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return less(h[i], h[j]) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *entryHeap) Push(v any) {
	e := v.(*entry)
	e.pos = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// posHeap is a heap of positions in an entryHeap, ordered by their entries.
type posHeap struct {
	h   entryHeap
	pos []int
}

func (p posHeap) Len() int           { return len(p.pos) }
func (p posHeap) Less(i, j int) bool { return less(p.h[p.pos[i]], p.h[p.pos[j]]) }
func (p posHeap) Swap(i, j int)      { p.pos[i], p.pos[j] = p.pos[j], p.pos[i] }
func (p *posHeap) Push(v any)        { p.pos = append(p.pos, v.(int)) }
func (p *posHeap) Pop() any {
	v := p.pos[len(p.pos)-1]
	p.pos = p.pos[:len(p.pos)-1]
	return v
}
