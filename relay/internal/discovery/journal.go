package discovery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

// JournalVersion identifies the journal's file format.
const JournalVersion = "relay.postwarden.dev/discovery-journal/v1"

// JournalFile is the journal's file name inside its directory.
const JournalFile = "discovery.journal"

// DefaultMaxPending bounds the unacknowledged observations a journal holds; beyond it
// Record refuses new ones (the operator is unreachable for long).
const DefaultMaxPending = 200_000

// ErrJournalFull is returned by Record when MaxPending observations await
// acknowledgement.
var ErrJournalFull = errors.New("discovery journal is full: observations are not being acknowledged")

// Journal is the relay's append-only, fsync'd record of discovery observations, kept
// until the operator acknowledges having merged them. It lives in the spool volume, so
// observations survive a restart. The file is JSON lines: a header (version, journal
// identity, acknowledged sequence number), then one Observation per line. Ack rewrites
// the file without the acknowledged lines (write, fsync, rename). A torn last line,
// from a crash during Record, is dropped when the journal is opened.
type Journal struct {
	path       string
	maxPending int

	// syncMu serialises fsyncs: one Record's fsync covers every line written before
	// it (group commit). Lock order: syncMu, then mu.
	syncMu sync.Mutex
	// synced is the highest sequence number known to be on disk; under mu.
	synced uint64

	mu      sync.Mutex
	f       *os.File
	off     int64 // the file's length: where the next line goes
	id      string
	acked   uint64
	next    uint64
	pending []pendingObs
}

type pendingObs struct {
	obs  discoverystate.Observation
	size int
}

type journalHeader struct {
	Version string `json:"version"`
	Journal string `json:"journal"`
	Acked   uint64 `json:"acked"`
}

// OpenJournal opens the journal in dir, creating it (with a new identity) if needed.
// maxPending <= 0 means DefaultMaxPending.
func OpenJournal(dir string, maxPending int) (*Journal, error) {
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating discovery journal directory: %w", err)
	}
	j := &Journal{path: filepath.Join(dir, JournalFile), maxPending: maxPending}
	data, err := os.ReadFile(j.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("creating discovery journal identity: %w", err)
		}
		j.id, j.next = hex.EncodeToString(b[:]), 1
		if err := j.rewrite(); err != nil {
			return nil, err
		}
		return j, nil
	case err != nil:
		return nil, fmt.Errorf("reading discovery journal: %w", err)
	}
	good, err := j.load(data)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening discovery journal: %w", err)
	}
	// Drop a torn tail, so the next record starts on a line of its own.
	if good < int64(len(data)) {
		if err := f.Truncate(good); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("truncating the torn end of the discovery journal: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("opening discovery journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("syncing discovery journal: %w", err)
	}
	j.f, j.off, j.synced = f, good, j.next-1
	return j, nil
}

// load parses the file and returns the length of its intact prefix.
func (j *Journal) load(data []byte) (int64, error) {
	r := bufio.NewReader(bytes.NewReader(data))
	var off int64
	line, err := r.ReadBytes('\n')
	var h journalHeader
	if err != nil || json.Unmarshal(line, &h) != nil || h.Version != JournalVersion || h.Journal == "" {
		return 0, fmt.Errorf("discovery journal %s has no valid %s header", j.path, JournalVersion)
	}
	off += int64(len(line))
	j.id, j.acked, j.next = h.Journal, h.Acked, h.Acked+1
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return off, nil // a line without its newline is torn
		}
		var o discoverystate.Observation
		if json.Unmarshal(line, &o) != nil {
			return off, nil
		}
		off += int64(len(line))
		if o.Seq < j.next {
			continue // already acknowledged
		}
		j.next = o.Seq + 1
		j.pending = append(j.pending, pendingObs{obs: o, size: len(line)})
	}
}

// ID is the journal's identity (Batch.Journal).
func (j *Journal) ID() string { return j.id }

// Record appends an observation and returns once it is on disk. Concurrent Records
// share fsyncs.
func (j *Journal) Record(kind discoverystate.Kind, address string, at time.Time) error {
	seq, err := j.write(kind, address, at)
	if err != nil {
		return err
	}
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	f, synced, written := j.f, j.synced, j.next-1
	j.mu.Unlock()
	if synced >= seq {
		return nil // a concurrent Record's fsync, or a compaction, covered it
	}
	if f == nil {
		return errors.New("discovery journal is closed")
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing discovery journal: %w", err)
	}
	j.mu.Lock()
	j.synced = max(j.synced, written)
	j.mu.Unlock()
	return nil
}

func (j *Journal) write(kind discoverystate.Kind, address string, at time.Time) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, errors.New("discovery journal is closed")
	}
	if len(j.pending) >= j.maxPending {
		return 0, ErrJournalFull
	}
	o := discoverystate.Observation{Seq: j.next, Kind: kind, Address: address, Time: at.UTC().Truncate(time.Second)}
	line, err := json.Marshal(o)
	if err != nil {
		return 0, fmt.Errorf("encoding discovery observation: %w", err)
	}
	line = append(line, '\n')
	if _, err := j.f.Write(line); err != nil {
		// Cut a partial line off, so that the next line starts cleanly.
		if terr := j.f.Truncate(j.off); terr == nil {
			_, _ = j.f.Seek(j.off, io.SeekStart)
		}
		return 0, fmt.Errorf("writing discovery journal: %w", err)
	}
	j.off += int64(len(line))
	j.next++
	j.pending = append(j.pending, pendingObs{obs: o, size: len(line)})
	return o.Seq, nil
}

// Batch returns the oldest unacknowledged observations whose encoding fits in about
// maxBytes (always at least one, if any).
func (j *Journal) Batch(relay string, maxBytes int) discoverystate.Batch {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := discoverystate.Batch{Version: discoverystate.BatchVersion, Journal: j.id, Relay: relay}
	size := 0
	for _, p := range j.pending {
		// Only what is on disk: a published observation must keep its number.
		if p.obs.Seq > j.synced {
			break
		}
		if len(b.Observations) > 0 && size+p.size > maxBytes {
			break
		}
		size += p.size
		b.Observations = append(b.Observations, p.obs)
	}
	return b
}

// Pending returns how many observations await acknowledgement.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// Ack forgets the observations up to seq, which the operator has merged, and compacts
// the file.
func (j *Journal) Ack(seq uint64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq <= j.acked || j.f == nil {
		return nil
	}
	seq = min(seq, j.next-1)
	i := 0
	for i < len(j.pending) && j.pending[i].obs.Seq <= seq {
		i++
	}
	j.pending = append([]pendingObs(nil), j.pending[i:]...)
	j.acked = seq
	return j.rewrite()
}

// rewrite replaces the file with the header and the pending observations.
func (j *Journal) rewrite() error {
	var buf bytes.Buffer
	h, err := json.Marshal(journalHeader{Version: JournalVersion, Journal: j.id, Acked: max(j.acked, j.next-1-uint64(len(j.pending)))})
	if err != nil {
		return fmt.Errorf("encoding discovery journal header: %w", err)
	}
	buf.Write(h)
	buf.WriteByte('\n')
	for _, p := range j.pending {
		line, err := json.Marshal(p.obs)
		if err != nil {
			return fmt.Errorf("encoding discovery observation: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	tmp := j.path + ".tmp"
	if err := writeSync(tmp, buf.Bytes()); err != nil {
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("replacing discovery journal: %w", err)
	}
	syncDir(filepath.Dir(j.path))
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopening discovery journal: %w", err)
	}
	if j.f != nil {
		_ = j.f.Close()
	}
	j.f, j.off, j.synced = f, int64(buf.Len()), j.next-1
	return nil
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing discovery journal: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing discovery journal: %w", err)
	}
	return nil
}

// syncDir makes a rename durable; some file systems cannot sync directories, so it is
// best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Close closes the file; later Records fail.
func (j *Journal) Close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
