// Package sendlimit enforces the sending limits of SMTP credentials (snapshot.Limits):
// messages per window and per day, recipients per message and per day.
//
// The limits hold for all the relays together, without a store they share: the operator
// counts the live replicas (from their status Leases) and writes the count into the
// snapshot, and each replica admits its share, the limit divided by that count and
// rounded up. While the replica set is stable, all of them together admit at most the
// limit plus one per replica for the rounding. When a replica dies, the others take
// over its share once the operator has seen its Lease expire (about 30 s), but what it
// sent in the window is forgotten with it: for that window the total can reach the limit
// plus one share. A client whose connections all land on one replica gets only that
// replica's share; a load balancer spreads connections, and so the shares.
//
// Counts slide: a window is kept in ten slots of a tenth of its length, and a day in 24
// hourly slots, so a message stops counting up to one slot after it leaves the window:
// the limits err on the side of refusing. A transaction reserves its message at MAIL and
// each recipient at RCPT, so concurrent transactions of one credential cannot overshoot;
// a transaction that does not end in an accepted message gives its reservations back.
package sendlimit

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Limit names the limit a refusal is for.
type Limit int

const (
	// None: admitted.
	None Limit = iota
	// Window: MessagesPerWindow; a temporary refusal (451 4.7.1).
	Window
	// Day: MessagesPerDay (550 5.7.1).
	Day
	// RecipientsPerMessage: the message has as many recipients as it may (452 4.5.3).
	RecipientsPerMessage
	// RecipientsPerDay (550 5.7.1).
	RecipientsPerDay
)

// String is the limit's name in metrics and logs.
func (l Limit) String() string {
	switch l {
	case Window:
		return "messages_per_window"
	case Day:
		return "messages_per_day"
	case RecipientsPerMessage:
		return "recipients_per_message"
	case RecipientsPerDay:
		return "recipients_per_day"
	}
	return "none"
}

// Limiter counts what each credential sends through this replica. It is safe for
// concurrent use.
type Limiter struct {
	now func() time.Time
	// replicas returns how many relays share the limits.
	replicas func() int

	mu    sync.Mutex
	users map[string]*usage
	// sweepAt is when idle credentials are next dropped.
	sweepAt time.Time
}

// New returns a Limiter on clock now (time.Now when nil) that admits 1/replicas() of
// each limit (all of it when replicas is nil or returns less than 1).
func New(now func() time.Time, replicas func() int) *Limiter {
	if now == nil {
		now = time.Now
	}
	if replicas == nil {
		replicas = func() int { return 1 }
	}
	return &Limiter{now: now, replicas: replicas, users: map[string]*usage{}}
}

// share is this replica's part of limit (0: unlimited).
func (l *Limiter) share(limit int) int {
	if limit <= 0 {
		return 0
	}
	n := max(l.replicas(), 1)
	return (limit + n - 1) / n
}

type usage struct {
	source        snapshot.ObjectRef // the SMTPCredential, for reports
	window        slots              // messages, over the credential's window
	dayMessages   slots              // over 24 hours
	dayRecipients slots
}

// Txn is one transaction's reservations; Commit or Cancel ends it.
type Txn struct {
	l          *Limiter
	user       string
	u          *usage
	windowSlot int64 // the slot each reservation went into, to give it back
	daySlot    int64
	rcptSlots  []int64
	done       bool
}

// Begin reserves one message of user's limits at MAIL; it returns the limit that refuses
// it, or None and the transaction. A nil limits admits everything. source is the
// user's SMTPCredential, for Busiest.
func (l *Limiter) Begin(user string, source snapshot.ObjectRef, limits *snapshot.Limits) (*Txn, Limit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	u := l.users[user]
	if u == nil {
		u = &usage{dayMessages: newSlots(24*time.Hour, 24), dayRecipients: newSlots(24*time.Hour, 24)}
		l.users[user] = u
	}
	u.source = source
	t := &Txn{l: l, user: user, u: u, windowSlot: -1, daySlot: -1}
	// The day's counts are kept without limits too: they are the credential's usage.
	var none snapshot.Limits
	if limits == nil {
		limits = &none
	}
	if limit := l.share(limits.MessagesPerDay); limit > 0 && u.dayMessages.sum(now) >= limit {
		return nil, Day
	}
	if limit := l.share(limits.MessagesPerWindow); limit > 0 {
		span := time.Duration(limits.WindowSeconds) * time.Second
		if u.window.span != span {
			// A new window length starts a new count: the old slots do not fit it.
			u.window = newSlots(span, 10)
		}
		if u.window.sum(now) >= limit {
			return nil, Window
		}
		t.windowSlot = u.window.add(now, 1)
	}
	t.daySlot = u.dayMessages.add(now, 1)
	return t, None
}

// AddRecipient reserves one more recipient at RCPT, which would be the message's
// n-th; it returns the limit that refuses it, or None.
func (t *Txn) AddRecipient(n int, limits *snapshot.Limits) Limit {
	if t == nil {
		return None
	}
	if limits == nil {
		limits = &snapshot.Limits{}
	}
	if limits.RecipientsPerMessage > 0 && n > limits.RecipientsPerMessage {
		// Per message, not shared: one message is on one replica.
		return RecipientsPerMessage
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if limit := l.share(limits.RecipientsPerDay); limit > 0 && t.u.dayRecipients.sum(now) >= limit {
		return RecipientsPerDay
	}
	t.rcptSlots = append(t.rcptSlots, t.u.dayRecipients.add(now, 1))
	return None
}

// Commit keeps the reservations: the message was accepted.
func (t *Txn) Commit() {
	if t != nil {
		t.done = true
	}
}

// Cancel gives back what the transaction reserved, unless it was committed; a recipient
// refused later (DATA refused, RSET) does not use up the limits.
func (t *Txn) Cancel() {
	if t == nil || t.done {
		return
	}
	t.done = true
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.windowSlot >= 0 {
		t.u.window.undo(t.windowSlot)
	}
	if t.daySlot >= 0 {
		t.u.dayMessages.undo(t.daySlot)
	}
	for _, s := range t.rcptSlots {
		t.u.dayRecipients.undo(s)
	}
}

// Usage is what user has sent through this replica: messages in its window and in the
// last day, and recipients in the last day.
func (l *Limiter) Usage(user string) (window, dayMessages, dayRecipients int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[user]
	if u == nil {
		return 0, 0, 0
	}
	now := l.now()
	return u.window.sum(now), u.dayMessages.sum(now), u.dayRecipients.sum(now)
}

// Busiest returns what the n credentials that sent most through this replica in the
// last 24 hours sent (reserved and accepted messages, and their recipients), the busiest
// first; credentials that sent nothing are left out.
func (l *Limiter) Busiest(n int) []snapshot.CredentialUsage {
	out := l.daily()
	// Sorted outside the lock, which MAIL and RCPT take.
	slices.SortFunc(out, func(a, b snapshot.CredentialUsage) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Username, b.Username))
	})
	return out[:min(len(out), n)]
}

// daily returns what each credential that sent in the last 24 hours sent.
func (l *Limiter) daily() []snapshot.CredentialUsage {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var out []snapshot.CredentialUsage
	for user, u := range l.users {
		if m := u.dayMessages.sum(now); m > 0 {
			out = append(out, snapshot.CredentialUsage{Credential: u.source, Username: user, Messages: m, Recipients: u.dayRecipients.sum(now)})
		}
	}
	return out
}

// sweep drops, at most every ten minutes, the credentials that have sent nothing for a
// day, so that memory follows the active credentials.
func (l *Limiter) sweep(now time.Time) {
	if now.Before(l.sweepAt) {
		return
	}
	l.sweepAt = now.Add(10 * time.Minute)
	for user, u := range l.users {
		if u.dayMessages.sum(now) == 0 && u.dayRecipients.sum(now) == 0 && u.window.sum(now) == 0 {
			delete(l.users, user)
		}
	}
}

// slots is a sliding count over span, in len(counts) slots of span/len(counts).
type slots struct {
	span   time.Duration
	slot   time.Duration
	counts []int32
	// last is the index (time / slot) of the newest slot written.
	last int64
}

func newSlots(span time.Duration, n int) slots {
	return slots{span: span, slot: span / time.Duration(n), counts: make([]int32, n)}
}

// advance clears the slots that fell out of the span since last.
func (s *slots) advance(now time.Time) int64 {
	if s.slot <= 0 {
		return 0
	}
	cur := now.UnixNano() / int64(s.slot)
	if cur > s.last {
		n := int64(len(s.counts))
		for i := s.last + 1; i <= cur && i <= s.last+n; i++ {
			s.counts[i%n] = 0
		}
		s.last = cur
	}
	return cur
}

func (s *slots) add(now time.Time, n int32) int64 {
	if s.slot <= 0 {
		return -1
	}
	cur := s.advance(now)
	s.counts[cur%int64(len(s.counts))] += n
	return cur
}

// undo takes one back from slot idx, if it still counts.
func (s *slots) undo(idx int64) {
	if s.slot <= 0 || idx < 0 || idx <= s.last-int64(len(s.counts)) {
		return
	}
	if c := &s.counts[idx%int64(len(s.counts))]; *c > 0 {
		*c--
	}
}

func (s *slots) sum(now time.Time) int {
	if s.slot <= 0 {
		return 0
	}
	s.advance(now)
	var total int
	for _, c := range s.counts {
		total += int(c)
	}
	return total
}
