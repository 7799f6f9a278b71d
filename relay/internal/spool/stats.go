package spool

import (
	"strings"
	"time"
)

// Summary is what the queue holds, as mailq would count it: computed from the
// in-memory index, without reading the disk.
type Summary struct {
	// Messages is the number of queued messages. Held of them are held by an
	// administrator. Deferred of them wait for a retry: not held, not due yet, and no
	// delivery attempt in progress. The others are active: due, or being delivered.
	Messages, Held, Deferred int
	// Recipients counts the recipients of queued messages still without a final
	// outcome.
	Recipients int
	// Bytes is the size of the queued bodies.
	Bytes int64
	// OldestAge is how long the oldest message has been queued, from the acceptance
	// time in its id; 0 when the queue is empty.
	OldestAge time.Duration
}

// Summary summarises the queue at the spool's clock. It walks the index once under
// the lock, O(messages): a few milliseconds for 100k.
func (s *Spool) Summary() Summary {
	now := s.now()
	key := now.UnixNano()
	var sum Summary
	var oldest string
	s.mu.Lock()
	sum.Messages = len(s.idx.heap)
	for _, e := range s.idx.heap {
		switch {
		case e.held:
			sum.Held++
		case e.next > key && !e.attempting:
			sum.Deferred++
		}
		sum.Recipients += int(e.pending)
		sum.Bytes += e.size
		if oldest == "" || e.id < oldest { // ids sort by acceptance time
			oldest = e.id
		}
	}
	s.mu.Unlock()
	if oldest != "" {
		sum.OldestAge = max(0, now.Sub(idTime(oldest)))
	}
	return sum
}

// tally is what the index keeps of a message's delivery state for Summary.
type tally struct {
	pending int32 // recipients without a final outcome
	// attempting: the message records an attempt (Attempts) that a pending recipient
	// has no outcome of yet. The runner writes the attempt before delivering and the
	// outcomes after, so this holds while the message is being delivered.
	attempting bool
	held       bool // Message.Held
}

func tallyOf(m Message) tally {
	t := tally{held: m.Held}
	for _, r := range m.Recipients {
		if r.Status == StatusPending {
			t.pending++
			t.attempting = t.attempting || r.Attempts < m.Attempts
		}
	}
	return t
}

// setTally records t for a queued message; unknown ids are ignored.
func (x *index) setTally(id string, t tally) {
	if e, ok := x.byID[id]; ok {
		e.tally = t
	}
}

// idTime is the acceptance time encoded in a queue id's first 10 characters.
func idTime(id string) time.Time {
	var ms int64
	for i := range 10 {
		ms = ms<<5 | int64(strings.IndexByte(idAlphabet, id[i]))
	}
	return time.UnixMilli(ms)
}
