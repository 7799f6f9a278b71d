package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"syscall"
	"time"
)

// stateVersion is the version of the state format; Open refuses others.
const stateVersion = 1

// stateFile is the on-disk form of a state: queue/ID.json, and the record at the end of
// queue/ID.msg.
type stateFile struct {
	Version int     `json:"version"`
	Message Message `json:"message"`
}

// A message file, queue/ID.msg, is the body as accepted, then the state at acceptance
// as JSON (padded, see appendState), then a footer: the attempt marker, footerMagic and the JSON's length as a
// big-endian uint64. The file is complete before it is renamed into the queue, so the
// footer is found by its position at the end, never by searching for it in bytes a
// client chose.
const (
	footerMagic = "pwspool1"
	footerSize  = markerSize + len(footerMagic) + 8
	// maxStateSize bounds what a footer may claim, so a damaged one cannot make the
	// reader allocate gigabytes. A state of the maximum recipients with long replies
	// stays far below it.
	maxStateSize = 16 << 20
)

// marker is the attempt marker: the only bytes of a message file written after its
// rename, in place, by Attempt. It records that delivery attempt number attempts has
// started and when the next one is due, without a file of its own.
type marker struct {
	attempts uint32
	next     int64 // Unix nanoseconds
}

// markerSize is the marker's encoding: attempts, next, and a CRC-32 of the two, so a
// write torn by a power loss reads as no marker rather than as a wrong one.
const markerSize = 4 + 8 + 4

func (mk marker) encode() []byte {
	b := make([]byte, 0, markerSize)
	b = binary.BigEndian.AppendUint32(b, mk.attempts)
	b = binary.BigEndian.AppendUint64(b, uint64(mk.next))
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// decodeMarker reads a marker; a torn one counts as none.
func decodeMarker(b []byte) marker {
	if crc32.ChecksumIEEE(b[:12]) != binary.BigEndian.Uint32(b[12:]) {
		return marker{}
	}
	return marker{attempts: binary.BigEndian.Uint32(b), next: int64(binary.BigEndian.Uint64(b[4:]))}
}

// apply puts the attempt the marker records into m when it is later than m's state:
// the runner marks an attempt before it delivers and writes the outcomes after.
func (mk marker) apply(m *Message) {
	if int(mk.attempts) > m.Attempts {
		m.Attempts = int(mk.attempts)
		m.NextAttempt = time.Unix(0, mk.next)
	}
}

// encodeState returns m's state as JSON.
func encodeState(m Message) ([]byte, error) {
	data, err := json.Marshal(stateFile{Version: stateVersion, Message: m})
	if err != nil {
		return nil, fmt.Errorf("spool: encode state %s: %w", m.ID, err)
	}
	return data, nil
}

// fileAlign is what message files' lengths are rounded up to, a filesystem block: the
// padding takes no disk space the last block did not already, and a reused file
// (freeFiles) then mostly has the new message's length already. Its fsync writes only
// data: with a length to change, the inode too, which cost this machine's ext4 a third
// more CPU and half again the wait per fsync.
const fileAlign = 4096

// appendState writes the end of the body still to be written (tail, which it may
// overwrite past its length), m's state and the footer after what f holds, in one
// write, and returns the offset of the footer's attempt marker. The JSON is padded with
// spaces, which decoders skip, to end the file at a multiple of fileAlign.
func appendState(f *os.File, tail []byte, m Message) (int64, error) {
	state, err := encodeState(m)
	if err != nil {
		return 0, err
	}
	end := m.Size + int64(len(state)) + int64(footerSize)
	pad := int(-end & (fileAlign - 1))
	n := len(state) + pad
	data := slices.Grow(tail, n+footerSize)
	data = append(data, state...)
	for range pad {
		data = append(data, ' ')
	}
	data = append(data, marker{}.encode()...)
	data = append(data, footerMagic...)
	data = binary.BigEndian.AppendUint64(data, uint64(n))
	if _, err := f.Write(data); err != nil {
		return 0, storageErr("write message", err)
	}
	return m.Size + int64(n), nil
}

// messageFile is what a message file holds besides the body.
type messageFile struct {
	m        Message // the state at acceptance
	mark     marker
	markerAt int64
}

// readMessageFile reads the state at acceptance and the attempt marker from a message
// file and checks that the body before them has the size the state records.
func readMessageFile(path string) (messageFile, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return messageFile{}, fmt.Errorf("spool: read message: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return messageFile{}, fmt.Errorf("spool: read message: %w", err)
	}
	size := info.Size()
	var footer [footerSize]byte
	if size < int64(footerSize) {
		return messageFile{}, fmt.Errorf("spool: message %s has %d bytes, too short for a state", path, size)
	}
	if _, err := f.ReadAt(footer[:], size-int64(footerSize)); err != nil {
		return messageFile{}, fmt.Errorf("spool: read message footer %s: %w", path, err)
	}
	tail := footer[markerSize:]
	if !bytes.Equal(tail[:len(footerMagic)], []byte(footerMagic)) {
		return messageFile{}, fmt.Errorf("spool: message %s has no state footer", path)
	}
	n := binary.BigEndian.Uint64(tail[len(footerMagic):])
	if n > maxStateSize || int64(n) > size-int64(footerSize) {
		return messageFile{}, fmt.Errorf("spool: message %s claims a state of %d bytes", path, n)
	}
	mf := messageFile{mark: decodeMarker(footer[:markerSize]), markerAt: size - int64(footerSize)}
	data := make([]byte, n)
	if _, err := f.ReadAt(data, mf.markerAt-int64(n)); err != nil {
		return messageFile{}, fmt.Errorf("spool: read message state %s: %w", path, err)
	}
	if mf.m, err = decodeState(path, data); err != nil {
		return messageFile{}, err
	}
	if body := mf.markerAt - int64(n); body != mf.m.Size {
		return messageFile{}, fmt.Errorf("spool: message %s has a body of %d bytes, its state says %d", path, body, mf.m.Size)
	}
	return mf, nil
}

// writeState writes m to a new file at path and fsyncs it; the caller renames it into
// place. The file is removed again on any error.
func writeState(path string, m Message) error {
	f, err := createState(path, m)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return storageErr("sync state", err)
	}
	return nil
}

// createState writes m to a new file at path and returns it open and not yet synced.
// The file is removed again on any error.
func createState(path string, m Message) (*os.File, error) {
	data, err := encodeState(m)
	if err != nil {
		return nil, err
	}
	f, err := openFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, storageErr("create state", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, storageErr("write state", err)
	}
	return f, nil
}

// readState reads and checks a state file (queue/ID.json).
func readState(path string) (Message, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return Message{}, fmt.Errorf("spool: read state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return Message{}, fmt.Errorf("spool: read state: %w", err)
	}
	return decodeState(path, data)
}

// decodeState parses and checks a state read from path.
func decodeState(path string, data []byte) (Message, error) {
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return Message{}, fmt.Errorf("spool: decode state %s: %w", path, err)
	}
	if sf.Version != stateVersion {
		return Message{}, fmt.Errorf("spool: state %s has version %d, want %d", path, sf.Version, stateVersion)
	}
	return sf.Message, nil
}

// syncDir fsyncs a directory, making renames and unlinks in it durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: open dir for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return storageErr("sync dir", err)
	}
	return nil
}

// storageErr wraps err with what failed, and with ErrInsufficientStorage when the disk
// or the quota is full.
func storageErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("spool: %s: %w: %w", what, ErrInsufficientStorage, err)
	}
	return fmt.Errorf("spool: %s: %w", what, err)
}
