package smtpd

import (
	"bytes"
	"net/mail"
	"testing"
)

// FuzzFieldNames checks the header From check's premise: once fieldNamesValid accepts a
// header section and Go's parser reads it, every line that a receiver could read as a
// From field is one of the From fields the check sees. A From that Go files under another
// key would be shown as the author by some receivers without having been checked.
func FuzzFieldNames(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nSubject: x\r\n\r\n"))
	f.Add([]byte("From : evil@example.org\r\nFrom: a@example.com\r\n\r\n"))
	f.Add([]byte("FROM:a@example.com\r\n from: b@example.org\r\n\r\n"))
	f.Add([]byte("X-\x01: 1\r\nFrom: a@example.com\r\n\r\n"))
	f.Fuzz(func(t *testing.T, header []byte) {
		if !bytes.HasSuffix(header, []byte("\r\n\r\n")) || !fieldNamesValid(header) {
			return
		}
		msg, err := mail.ReadMessage(bytes.NewReader(header))
		if err != nil {
			return
		}
		fromLines := 0
		for line := range bytes.Lines(header) {
			if bytes.Equal(line, []byte("\r\n")) {
				break
			}
			name, _, ok := bytes.Cut(line, []byte(":"))
			if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("from")) && line[0] != ' ' && line[0] != '\t' {
				fromLines++
			}
		}
		if got := len(msg.Header["From"]); got != fromLines {
			t.Fatalf("%d From lines, Go's parser sees %d From fields: %q", fromLines, got, header)
		}
	})
}
