package webhook

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errDiskFull is append's answer when the store holds its maximum.
var errDiskFull = errors.New("delivery event store is full")

// record is one pending event as stored: the POST's body, exactly as it is signed, and
// what the sender needs to decide about it without parsing the body.
type record struct {
	URL    string          `json:"url"`
	Domain string          `json:"domain"`
	Type   string          `json:"type"`
	Time   time.Time       `json:"time"`
	Body   json.RawMessage `json:"body"`
}

// store keeps pending events on disk, one file per event, <dir>/<endpoint>/<seq>.json,
// where endpoint is a hash of the URL and seq a number that grows with every event, so
// a folder listed in name order is its endpoint's queue in order. In memory it keeps
// only each file's sequence number and size.
//
// The endpoints share maxBytes, but none may hold more than half of what the others
// leave free (fits): an endpoint that is down for a day fills at most half the store,
// and the tenants whose endpoints answer keep room for their events. A healthy endpoint
// holds next to nothing, so it is refused only when several dead ones have taken their
// halves.
type store struct {
	dir      string
	maxBytes int64

	mu     sync.Mutex
	seq    uint64
	events int
	bytes  int64
	queues map[string][]item // by endpoint key, oldest first
	held   map[string]int64  // bytes pending, by endpoint key
}

// fits reports whether endpoint key may store size more bytes: within maxBytes, and
// within half of what the other endpoints leave free.
func (s *store) fits(key string, size int64) bool {
	mine := s.held[key]
	others := s.bytes - mine
	return s.bytes+size <= s.maxBytes && mine+size <= (s.maxBytes-others)/2
}

type item struct {
	seq  uint64
	size int64
}

func endpointKey(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:12])
}

func seqName(seq uint64) string { return fmt.Sprintf("%020d.json", seq) }

// openStore reads what a previous run left in dir, removing unfinished writes.
func openStore(dir string, maxBytes int64) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the delivery event store: %w", err)
	}
	s := &store{dir: dir, maxBytes: maxBytes, queues: map[string][]item{}, held: map[string]int64{}}
	endpoints, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the delivery event store: %w", err)
	}
	for _, ep := range endpoints {
		if !ep.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, ep.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the delivery event store: %w", err)
		}
		var items []item
		for _, f := range files {
			path := filepath.Join(dir, ep.Name(), f.Name())
			seq, err := strconv.ParseUint(strings.TrimSuffix(f.Name(), ".json"), 10, 64)
			if err != nil || !strings.HasSuffix(f.Name(), ".json") {
				_ = os.Remove(path) // a write cut short (.tmp-*) or a stray file
				continue
			}
			info, err := f.Info()
			if err != nil {
				continue
			}
			items = append(items, item{seq: seq, size: info.Size()})
			s.bytes += info.Size()
			s.held[ep.Name()] += info.Size()
			s.events++
			s.seq = max(s.seq, seq)
		}
		slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.seq, b.seq) })
		if len(items) > 0 {
			s.queues[ep.Name()] = items
		}
	}
	return s, nil
}

// append writes r at the end of its endpoint's queue and returns the endpoint's key.
// The file is written under a temporary name and renamed, so a crash never leaves half
// an event; it is not fsync'd (see the package doc).
func (s *store) append(r record) (string, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encoding a delivery event: %w", err)
	}
	key := endpointKey(r.URL)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.fits(key, int64(len(data))) {
		return "", errDiskFull
	}
	dir := filepath.Join(s.dir, key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("storing a delivery event: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("storing a delivery event: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	seq := s.seq + 1
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, seqName(seq)))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("storing a delivery event: %w", err)
	}
	s.seq = seq
	s.bytes += int64(len(data))
	s.held[key] += int64(len(data))
	s.events++
	s.queues[key] = append(s.queues[key], item{seq: seq, size: int64(len(data))})
	return key, nil
}

// head returns the oldest pending record of endpoint key; ok is false when there is
// none. A file that cannot be decoded is returned as an error, with its seq, for the
// caller to drop.
func (s *store) head(key string) (r record, seq uint64, ok bool, err error) {
	s.mu.Lock()
	q := s.queues[key]
	if len(q) == 0 {
		s.mu.Unlock()
		return record{}, 0, false, nil
	}
	seq = q[0].seq
	s.mu.Unlock()
	data, err := os.ReadFile(filepath.Join(s.dir, key, seqName(seq)))
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil {
		return record{}, seq, true, fmt.Errorf("reading a stored delivery event: %w", err)
	}
	return r, seq, true, nil
}

// remove deletes the head of endpoint key's queue, which must be seq.
func (s *store) remove(key string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[key]
	if len(q) == 0 || q[0].seq != seq {
		return
	}
	_ = os.Remove(filepath.Join(s.dir, key, seqName(seq)))
	s.bytes -= q[0].size
	s.held[key] -= q[0].size
	s.events--
	if len(q) == 1 {
		delete(s.queues, key)
		delete(s.held, key)
		return
	}
	s.queues[key] = q[1:]
}

// keys lists the endpoints with pending events.
func (s *store) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.queues))
	for k := range s.queues {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// size returns the pending events and their bytes.
func (s *store) size() (events int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, s.bytes
}

// pending reports whether endpoint key has events.
func (s *store) pending(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[key]) > 0
}
