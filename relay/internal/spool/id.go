package spool

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// idAlphabet is Crockford's base32: no I, L, O or U, and in ASCII order, so ids of the
// same length sort as their numeric value.
const idAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idLen is 10 characters of millisecond timestamp (50 bits, good until the year 37000)
// followed by 8 characters (40 bits) of randomness.
const idLen = 18

// NewID returns a fresh queue id, for AcceptAs. The SMTP server takes one before it
// writes its Received: header, so that the header, the 250 reply and the logs all name
// the message by the id it is queued under.
func (s *Spool) NewID() string { return newID(s.now()) }

// newID returns a queue id: short, safe as a file name and in an SMTP reply, sortable
// by acceptance time to the millisecond, and unique with overwhelming probability
// (collisions within one millisecond are caught by the index and O_EXCL).
func newID(now time.Time) string {
	var b [idLen]byte
	ms := uint64(now.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = idAlphabet[ms&31]
		ms >>= 5
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	x := binary.BigEndian.Uint64(r[:])
	for i := idLen - 1; i >= 10; i-- {
		b[i] = idAlphabet[x&31]
		x >>= 5
	}
	return string(b[:])
}

// validID reports whether s has the shape of a queue id, so names read from disk or
// passed in by callers can never escape the queue directory.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') || c == 'I' || c == 'L' || c == 'O' || c == 'U' {
			return false
		}
	}
	return true
}
