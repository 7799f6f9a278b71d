package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// readHeader reads the header section up to and including the empty line that ends it
// (or to the end of a message without body), refusing one larger than max.
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		buf = append(buf, line...)
		if len(buf) > max {
			return nil, errHeaderTooLarge
		}
		switch {
		case err == bufio.ErrBufferFull:
			atLineStart = false
			continue
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return nil, err
		}
		if atLineStart && string(line) == "\r\n" {
			return buf, nil
		}
		atLineStart = true
	}
}

// fieldNamesValid reports whether every header field name is RFC 5322 ftext (printable
// US-ASCII but ':', no space). Go's parser files "From : x" under another key than
// From, while receivers that honour RFC 5322's obsolete syntax show it as the author, so
// a name the check cannot trust is refused rather than skipped.
func fieldNamesValid(header []byte) bool {
	for line := range bytes.Lines(header) {
		if bytes.Equal(line, []byte("\r\n")) {
			return true // the end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // a folded continuation of the previous field
		}
		name, _, found := bytes.Cut(line, []byte(":"))
		if !found || len(name) == 0 {
			return false
		}
		for _, b := range name {
			if b < 33 || b > 126 {
				return false
			}
		}
	}
	return true
}

// maxMessageIDLen bounds the Message-ID kept for the tracking log: the value is the
// client's, and a folded field can fill the whole header section (MaxHeaderBytes).
const maxMessageIDLen = 512

// messageIDOf returns the first Message-ID field of a header section, unfolded and
// trimmed, or "" when there is none. It is only logged, never trusted, so obsolete
// syntax (space before the colon) is read as receivers read it.
func messageIDOf(header []byte) string {
	var value []byte
	found := false
	for line := range bytes.Lines(header) {
		if bytes.Equal(line, []byte("\r\n")) {
			break // the end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if found {
				value = append(value, bytes.TrimRight(line, "\r\n")...)
			}
			continue
		}
		if found {
			break
		}
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Message-ID")) {
			found = true
			value = append(value, bytes.TrimRight(rest, "\r\n")...)
		}
	}
	v := strings.TrimSpace(string(value))
	if len(v) > maxMessageIDLen {
		v = v[:maxMessageIDLen]
	}
	return v
}
