package dkim

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// signedFields are the header fields every signature covers: those RFC 6376 5.4.1
// recommends (originator and recipients, subject and date, identity and threading, the
// MIME fields that say how to read the body), with List-Unsubscribe and
// List-Unsubscribe-Post, which RFC 8058 requires a valid signature to cover before a
// receiver offers one-click unsubscription. Trace fields (our own Received: among them)
// are left out: later hops add to them and may rewrite them.
var signedFields = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Disposition", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// headerKeys returns the h= tag for a header section: each name of signedFields as many
// times as the section holds it, plus one (oversigning, RFC 6376 8.15). Signers and
// verifiers take a name's occurrences from the bottom of the header up, and hash an
// occurrence that does not exist as nothing (RFC 6376 5.4.2; go-msgauth's signer skips
// it the same way), so the extra one asserts that there are no more: a second From: or
// Subject: added on the way, which some readers would show instead of the signed one,
// breaks the signature rather than ride along unsigned. Names are matched as go-msgauth
// matches them: case-insensitively, blanks around them trimmed.
func headerKeys(header []byte) []string {
	count := make([]int, len(signedFields))
	for line := range bytes.Lines(header) {
		if bytes.Equal(line, []byte("\r\n")) {
			break // the end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded continuation
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		for i, f := range signedFields {
			if strings.EqualFold(string(name), f) {
				count[i]++
				break
			}
		}
	}
	// Every name once, then the repeats while the tag stays within its bound: a header
	// that repeats a field dozens of times gets some occurrences unsigned rather than a
	// signature line that receivers refuse.
	size := 0
	for _, f := range signedFields {
		size += len(f) + 1
	}
	keys := make([]string, 0, len(signedFields)+len(count))
	for i, f := range signedFields {
		keys = append(keys, f)
		for range count[i] {
			if size+len(f)+1 > maxHeaderKeysLen {
				break
			}
			keys = append(keys, f)
			size += len(f) + 1
		}
	}
	return keys
}

// maxHeaderKeysLen bounds the h= tag, which go-msgauth writes on a line of its own
// without folding it, so that the line stays within RFC 5322's 998 characters.
const maxHeaderKeysLen = 900

var errAborted = errors.New("dkim: message abandoned before it was signed")

// MessageSigner signs one message with every key of one domain while the message
// streams past: NewMessageSigner takes the header section, Write the rest, and Finish
// returns the DKIM-Signature fields to put before the message. Abort a message that is
// not finished, so that no signing goroutine is left waiting for more. A
// MessageSigner is used by one goroutine.
type MessageSigner struct {
	signers []*msgdkim.Signer
	// aborted makes the keys refuse to sign: a message abandoned halfway costs no
	// private-key operation, which a client could otherwise provoke at will.
	aborted atomic.Bool
	err     error // the first write error, which Finish returns
	done    bool
}

// NewMessageSigner starts signing a message whose header section (with the empty line
// that ends it, when the message has one) is header, as domain (d=) with keys (s=,
// a=), one signature per key in their order. Signatures are relaxed/relaxed over
// headerKeys(header) and carry t=, the signing time.
func NewMessageSigner(domain string, keys []Key, header []byte) (*MessageSigner, error) {
	ms := &MessageSigner{}
	h := headerKeys(header)
	for _, k := range keys {
		s, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain:                 domain,
			Selector:               k.Selector,
			Signer:                 abortable{Signer: k.Signer, aborted: &ms.aborted},
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
			BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
			HeaderKeys:             h,
		})
		if err != nil {
			ms.Abort()
			return nil, fmt.Errorf("dkim: selector %s of %s: %w", k.Selector, domain, err)
		}
		ms.signers = append(ms.signers, s)
	}
	ms.write(header)
	// A message without body may end inside its header section (with BDAT, even
	// without its last CRLF). go-msgauth needs the section ended, and delivery's DATA
	// ends the last line, so the signature is made over the message as it goes out.
	crlf := []byte("\r\n")
	switch {
	case bytes.Equal(header, crlf) || bytes.HasSuffix(header, []byte("\r\n\r\n")):
	case len(header) > 0 && !bytes.HasSuffix(header, crlf):
		ms.write([]byte("\r\n\r\n"))
	default:
		ms.write(crlf)
	}
	return ms, nil
}

// Write hashes the next bytes of the body. It never fails, so that signing cannot cut
// short the stream it reads beside: a signer's error is kept for Finish.
func (ms *MessageSigner) Write(p []byte) (int, error) {
	ms.write(p)
	return len(p), nil
}

func (ms *MessageSigner) write(p []byte) {
	if ms.err != nil || ms.done {
		return
	}
	for _, s := range ms.signers {
		if _, err := s.Write(p); err != nil {
			ms.err = err
			return
		}
	}
}

// Finish signs what was written and returns the DKIM-Signature fields, each ending in
// CRLF, to go before the message.
func (ms *MessageSigner) Finish() (string, error) {
	if ms.done {
		return "", errors.New("dkim: message signer used after Finish or Abort")
	}
	ms.done = true
	err := ms.err
	if err != nil {
		ms.aborted.Store(true) // no signature will be used: spare the keys
	}
	for _, s := range ms.signers {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = cerr
			ms.aborted.Store(true)
		}
	}
	if err != nil {
		return "", fmt.Errorf("dkim: signing: %w", err)
	}
	var b strings.Builder
	for _, s := range ms.signers {
		b.WriteString(s.Signature())
	}
	return b.String(), nil
}

// Abort ends signing without signatures. It does nothing after Finish.
func (ms *MessageSigner) Abort() {
	if ms.done {
		return
	}
	ms.done = true
	ms.aborted.Store(true)
	for _, s := range ms.signers {
		_ = s.Close()
	}
}

// abortable is a key that refuses to sign once aborted is set.
type abortable struct {
	crypto.Signer
	aborted *atomic.Bool
}

func (a abortable) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if a.aborted.Load() {
		return nil, errAborted
	}
	return a.Signer.Sign(rand, digest, opts)
}
