package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of an event POST.
const (
	HeaderSignature = "X-Postwarden-Signature"
	HeaderTimestamp = "X-Postwarden-Timestamp"
)

// Event is one recipient's outcome in one delivery attempt: the JSON body of a POST.
// docs/operating.md ("Delivery events") documents every field; add fields, never rename
// or retype one, since receivers parse them.
type Event struct {
	// ID is unique per event and the same on every retry of it, for deduplication.
	ID string `json:"id"`
	// Type is snapshot.EventDelivered, EventDeferred, EventBounced, EventExpired or
	// EventRefused.
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	// Domain is the managed domain whose endpoint receives the event: the recipient's
	// for mail to the domain's own server, else the sender's; for a bounce or delay
	// notice the relay sends, the domain it sends it for.
	Domain    string `json:"domain"`
	QueueID   string `json:"queue_id"`
	MessageID string `json:"message_id"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	// Direction is that of the route: "inbound" to the domain's own server, "outbound".
	Direction string `json:"direction"`
	Attempt   int    `json:"attempt"`
	// EnhancedCode is the RFC 3463 status; ReplyCode the server's code (0 when the
	// relay decided); Reply its text, or the relay's reason.
	EnhancedCode string `json:"enhanced_code"`
	ReplyCode    int    `json:"reply_code"`
	Reply        string `json:"reply"`
	RemoteHost   string `json:"remote_host"`
	TLS          TLS    `json:"tls"`
}

// TLS describes the session the attempt ran on; Version is "none" for plaintext, and
// empty, like Cipher, when no session was opened.
type TLS struct {
	Version  string `json:"version"`
	Cipher   string `json:"cipher"`
	Verified bool   `json:"verified"`
}

// Sink takes events without blocking; Sender is one. Delivery hands it each recipient's
// outcome, and the SMTP server each recipient it refuses for a managed domain.
type Sink interface {
	Enqueue(ev Event)
}

// NewID returns a fresh event id.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Sign returns the X-Postwarden-Signature value of body sent at timestamp (Unix seconds).
func Sign(key []byte, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(timestamp, 10) + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a received event: the signature header against body and the timestamp
// header, and the timestamp within window of now, which refuses a replay of an old
// request. It is what a receiver written in Go runs.
func Verify(key []byte, signature, timestamp string, body []byte, now time.Time, window time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("bad %s %q", HeaderTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return fmt.Errorf("%s is %s away from now, beyond %s", HeaderTimestamp, d.Round(time.Second), window)
	}
	want := Sign(key, ts, body)
	if !strings.HasPrefix(signature, "sha256=") || !hmac.Equal([]byte(signature), []byte(want)) {
		return errors.New("signature does not match")
	}
	return nil
}
