package dsn

import (
	"bytes"
	"testing"
)

// FuzzHeaderSection reads arbitrary messages: the header section copied into a report
// must be bounded, made of CRLF-terminated lines, and hold no empty line (which would end
// the text/rfc822-headers part early and let a message's body pose as report content).
func FuzzHeaderSection(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("From: a@example.com\nSubject: folded\n\tline\n\nbody"))
	f.Add([]byte("\r\n\r\nbody"))
	f.Add([]byte("X: \r\r\n \r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := HeaderSection(bytes.NewReader(msg))
		if err != nil {
			return
		}
		if len(out) > MaxHeaderBytes+2*bytes.Count(out, []byte("\n")) {
			t.Fatalf("%d bytes of headers, more than the bound", len(out))
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("the header section does not end with CRLF: %q", out)
		}
		if bytes.Contains(out, []byte("\r\n\r\n")) || bytes.HasPrefix(out, []byte("\r\n")) {
			t.Fatalf("an empty line inside the header section: %q", out)
		}
		if bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
			t.Fatalf("a bare LF in the header section: %q", out)
		}
	})
}
