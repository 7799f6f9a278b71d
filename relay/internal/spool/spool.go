package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Envelope is the SMTP transaction a message arrived in.
type Envelope struct {
	Sender     string    `json:"sender"` // reverse path; "" is the null sender
	Recipients []string  `json:"recipients"`
	AuthUser   string    `json:"authUser,omitempty"` // SASL username, "" when not authenticated
	ClientIP   string    `json:"clientIP,omitempty"`
	Direction  string    `json:"direction"` // "outbound" or "inbound"
	ReceivedAt time.Time `json:"receivedAt"`
	// OnBehalfOf is, for a notification (null sender), the managed domain of the
	// message it reports on, whose Outbound TLS policy applies to it; "" otherwise.
	OnBehalfOf string `json:"onBehalfOf,omitempty"`
	// MessageID is the message's Message-ID header as the client sent it (bounded), for
	// delivery events; "" when it had none.
	MessageID string `json:"messageID,omitempty"`
	// Prepend holds header fields, each ending in CRLF, that go before the stored body
	// whenever the message is read as a whole (Content): those that could only be made
	// once the body's last byte was read, such as DKIM signatures. AcceptSealed sets it;
	// the body file stays exactly as received.
	Prepend string `json:"prepend,omitempty"`
}

// Status is the delivery outcome for one recipient.
type Status string

const (
	StatusPending   Status = "Pending"
	StatusDelivered Status = "Delivered"
	StatusFailed    Status = "Failed"
)

// RecipientState is the delivery state of one recipient.
type RecipientState struct {
	Address   string    `json:"address"`
	Status    Status    `json:"status"`
	Attempts  int       `json:"attempts,omitempty"`
	LastReply string    `json:"lastReply,omitempty"` // the last remote reply or error, for DSNs and logs
	UpdatedAt time.Time `json:"updatedAt"`
}

// Message is a queued message's envelope and delivery state; the body stays on disk.
type Message struct {
	ID            string           `json:"id"` // the queue id; also printed in logs and in the 250 reply
	Envelope      Envelope         `json:"envelope"`
	Size          int64            `json:"size"` // body bytes, without Envelope.Prepend
	Recipients    []RecipientState `json:"recipients"`
	Attempts      int              `json:"attempts,omitempty"`
	NextAttempt   time.Time        `json:"nextAttempt"`
	DelayNotified bool             `json:"delayNotified,omitempty"` // a delay DSN was sent
	// Held is set by an administrator (postwarden queue hold): the message is never due,
	// whatever NextAttempt says, until it is released. It is in the state file so that
	// a hold survives a restart.
	Held bool `json:"held,omitempty"`
}

// Options tunes a Spool. The zero value is ready to use.
type Options struct {
	// Logger receives recovery reports (removed garbage, quarantined entries).
	// Nil discards them.
	Logger *slog.Logger
	// Now is the clock used for ids, ReceivedAt and the first NextAttempt. Nil is time.Now.
	Now func() time.Time

	// beforeCommit, when set by tests, runs in the committer before each batch with the
	// batch size.
	beforeCommit func(n int)
	// crashAt, when set by tests, is called at named points of a commit so a child
	// process can be killed exactly there.
	crashAt func(point string)
	// maxBatch, when set by benchmarks, caps a group commit; 1 turns group commit off.
	maxBatch int
}

// Stats counts the committer's work, for metrics and to show group commit at work.
type Stats struct {
	Commits uint64 // group commits, each ending in one directory fsync
	Ops     uint64 // accepts, updates and removes committed
}

var (
	// ErrNotFound is returned for an id that is not queued.
	ErrNotFound = errors.New("spool: message not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrInsufficientStorage is wrapped into errors caused by a full disk or quota, so
	// the SMTP layer can answer 452 4.3.1 instead of 451.
	ErrInsufficientStorage = errors.New("spool: insufficient storage")
)

const (
	tmpDir     = "tmp"
	freeDir    = "free" // message files kept for reuse (freeFiles)
	queueDir   = "queue"
	corruptDir = "corrupt"
	msgExt     = ".msg"  // body and the state at acceptance
	stateExt   = ".json" // a later state, written by Update
	// legacyBodyExt is the body file of the layout before message files, when the
	// state lived only in ID.json; Open converts such messages.
	legacyBodyExt = ".body"
)

// Spool is a durable message queue in one directory. Its methods are safe for
// concurrent use.
type Spool struct {
	dir      string
	tmp      string
	freeDir  string
	queue    string
	queueFD  *os.File // kept open for the directory fsyncs
	unlock   func() error
	log      *slog.Logger
	now      func() time.Time
	notify   chan struct{}
	hookPre  func(n int)
	crashAt  func(point string)
	maxBatch int
	commitCh chan struct{} // wakes the committer; capacity 1, coalesced
	stopped  chan struct{} // closed when the committer exits
	seq      atomic.Uint64 // names update temp files

	mu  sync.Mutex
	idx index
	// fresh holds the states at acceptance of recently accepted messages, which their
	// message files hold too, so that the runner reads none of them back from disk. An
	// entry goes when Update gives its message a later state or Remove removes it; at
	// most freshStates are kept.
	fresh map[string]Message
	// accepting reserves the ids of accepts not committed yet (createBody).
	accepting map[string]bool
	free      freeFiles
	freeSeq   uint64 // names files moved to free/; the committer's alone
	pending   []*op  // ops waiting for the committer
	closed    bool
	stats     Stats
}

// Open opens or creates the spool in dir, removes what crashed writers left behind
// and rebuilds the index from the committed messages.
func Open(dir string, opts Options) (*Spool, error) {
	s := &Spool{
		dir:       dir,
		tmp:       filepath.Join(dir, tmpDir),
		freeDir:   filepath.Join(dir, freeDir),
		queue:     filepath.Join(dir, queueDir),
		log:       opts.Logger,
		now:       opts.Now,
		notify:    make(chan struct{}, 1),
		hookPre:   opts.beforeCommit,
		crashAt:   opts.crashAt,
		maxBatch:  opts.maxBatch,
		commitCh:  make(chan struct{}, 1),
		stopped:   make(chan struct{}),
		idx:       newIndex(),
		fresh:     make(map[string]Message),
		accepting: make(map[string]bool),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, d := range []string{dir, s.tmp, s.freeDir, s.queue} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: create %s: %w", d, err)
		}
	}
	unlock, err := lockDir(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, err
	}
	s.unlock = unlock
	if err := s.recover(); err != nil {
		_ = unlock()
		return nil, err
	}
	s.queueFD, err = os.Open(s.queue)
	if err != nil {
		_ = unlock()
		return nil, fmt.Errorf("spool: open queue dir: %w", err)
	}
	// Make the directories themselves and the recovery's deletions durable. The parent
	// may be unreadable to us; then dir was most likely not just created.
	_ = syncDir(filepath.Dir(dir))
	for _, d := range []string{dir, s.tmp, s.queue} {
		if err := syncDir(d); err != nil {
			_ = s.queueFD.Close()
			_ = unlock()
			return nil, err
		}
	}
	go s.commitLoop()
	return s, nil
}

// Close waits for ops already handed to the committer, then releases the directory.
// Calls after Close return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.wakeCommitter()
	<-s.stopped
	err := s.queueFD.Close()
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	return err
}

// Notify returns a channel that receives a value after messages are accepted. Sends
// never block and coalesce: one receive may stand for many accepts.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Len returns the number of queued messages.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idx.byID)
}

// Stats returns the committer's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Get returns a queued message's envelope and state.
func (s *Spool) Get(id string) (Message, error) {
	if !validID(id) {
		return Message{}, fmt.Errorf("get %q: %w", id, ErrNotFound)
	}
	s.mu.Lock()
	e, ok := s.idx.byID[id]
	var at where
	if ok {
		at = s.whereOf(e)
	}
	s.mu.Unlock()
	if !ok {
		return Message{}, fmt.Errorf("get %s: %w", id, ErrNotFound)
	}
	m, err := s.readCurrent(id, at)
	if errors.Is(err, os.ErrNotExist) { // removed since the lookup
		return Message{}, fmt.Errorf("get %s: %w", id, ErrNotFound)
	}
	return m, err
}

// freshStates bounds Spool.fresh: a few megabytes, more than the runner's look-ahead.
const freshStates = 4096

// where says where a message's current state is, as the index knows it: in ID.json
// (updated), in memory (cached), or else in the message file; then the mark.
type where struct {
	updated bool
	mark    marker
	cached  *Message
}

// whereOf describes e; the caller holds s.mu.
func (s *Spool) whereOf(e *entry) where {
	at := where{updated: e.updated, mark: e.mark}
	if m, ok := s.fresh[e.id]; ok && !e.updated {
		at.cached = &m
	}
	return at
}

// readCurrent reads a message's current state: the one Update wrote last, or the one
// in the message file when it was never updated; then the attempt marker.
func (s *Spool) readCurrent(id string, at where) (Message, error) {
	var m Message
	var err error
	switch {
	case at.cached != nil:
		// A copy the caller may change: the recipient slices are the cache's.
		m = *at.cached
		m.Recipients = slices.Clone(m.Recipients)
		m.Envelope.Recipients = slices.Clone(m.Envelope.Recipients)
	case at.updated:
		m, err = readState(s.statePath(id))
	default:
		var mf messageFile
		mf, err = readMessageFile(s.msgPath(id))
		m = mf.m
	}
	if err != nil {
		return Message{}, err
	}
	at.mark.apply(&m)
	return m, nil
}

// Body is a queued message's body exactly as accepted: the first part of its message
// file, without the state stored after it.
type Body struct {
	*io.SectionReader
	f *os.File
}

// Close closes the message file.
func (b *Body) Close() error { return b.f.Close() }

// OpenBody opens the raw message as accepted. The caller closes it.
func (s *Spool) OpenBody(id string) (*Body, error) {
	if !validID(id) {
		return nil, fmt.Errorf("open body %q: %w", id, ErrNotFound)
	}
	s.mu.Lock()
	e, ok := s.idx.byID[id]
	var size int64
	if ok {
		size = e.size
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("open body %s: %w", id, ErrNotFound)
	}
	f, err := openFile(s.msgPath(id), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open body %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, err)
	}
	return newBody(f, size), nil
}

func newBody(f *os.File, size int64) *Body {
	return &Body{SectionReader: io.NewSectionReader(f, 0, size), f: f}
}

// Due returns up to limit messages whose NextAttempt is at or before now, earliest
// first (ties by id, so by acceptance). It does not claim them: the caller keeps track
// of messages it is delivering until it calls Update or Remove.
func (s *Spool) Due(now time.Time, limit int) []Message {
	s.mu.Lock()
	ids := s.idx.due(now.UnixNano(), limit)
	at := make([]where, len(ids))
	for i, id := range ids {
		at[i] = s.whereOf(s.idx.byID[id])
	}
	s.mu.Unlock()
	out := make([]Message, 0, len(ids))
	for i, id := range ids {
		m, err := s.readCurrent(id, at[i])
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				s.log.Error("spool: read due message", "id", id, "err", err)
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// DueIDs is Due without reading the messages' states: only their ids, in the same
// order. It touches no file, so a caller that keeps the states it has read already
// can look at the head of a long queue often.
func (s *Spool) DueIDs(now time.Time, limit int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.due(now.UnixNano(), limit)
}

// NextDue returns the earliest NextAttempt of any queued message, and false when the
// queue is empty or holds only held messages.
func (s *Spool) NextDue() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.idx.min()
	if e == nil || e.next == heldKey {
		return time.Time{}, false
	}
	return time.Unix(0, e.next), true
}

// IDs returns the ids of every queued message in the order they were accepted.
func (s *Spool) IDs() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.idx.byID))
	for id := range s.idx.byID {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids) // ids sort by acceptance time
	return ids
}

func (s *Spool) msgPath(id string) string   { return filepath.Join(s.queue, id+msgExt) }
func (s *Spool) statePath(id string) string { return filepath.Join(s.queue, id+stateExt) }
