package spool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func openSpool(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testEnvelope(rcpts ...string) Envelope {
	if len(rcpts) == 0 {
		rcpts = []string{"bob@example.net"}
	}
	return Envelope{
		Sender:     "alice@example.com",
		Recipients: rcpts,
		AuthUser:   "alice",
		ClientIP:   "192.0.2.7",
		Direction:  "outbound",
	}
}

// testBody is a message whose content can be checked from its first line alone, so a
// test can tell a complete body from a truncated or mixed one.
func testBody(seq int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "X-Seq: %d\r\nSubject: test\r\n\r\n", seq)
	n := 100 + seq*997%20000
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of message %d\r\n", i, seq)
	}
	return b.Bytes()
}

// checkBody reports whether body is exactly testBody of the sequence number it names.
func checkBody(body []byte) error {
	first, _, ok := bytes.Cut(body, []byte("\r\n"))
	if !ok {
		return fmt.Errorf("no header line in %d bytes", len(body))
	}
	seq, err := strconv.Atoi(strings.TrimPrefix(string(first), "X-Seq: "))
	if err != nil {
		return fmt.Errorf("bad header %q", first)
	}
	if !bytes.Equal(body, testBody(seq)) {
		return fmt.Errorf("body of message %d differs (%d bytes)", seq, len(body))
	}
	return nil
}

func readBody(t testing.TB, s *Spool, id string) []byte {
	t.Helper()
	f, err := s.OpenBody(id)
	if err != nil {
		t.Fatalf("OpenBody(%s): %v", id, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read body %s: %v", id, err)
	}
	return b
}

func accept(t testing.TB, s *Spool, seq int) string {
	t.Helper()
	id, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(testBody(seq)))
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return id
}

// dirNames lists a directory's entries, for asserting what is left on disk.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *Spool) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func queueFiles(t testing.TB, dir string) []string { return dirNames(t, filepath.Join(dir, queueDir)) }
func tmpFiles(t testing.TB, dir string) []string   { return dirNames(t, filepath.Join(dir, tmpDir)) }

// writeMessageFileForTest writes a message file straight into place, as a committed
// accept leaves it.
func writeMessageFileForTest(t testing.TB, path string, body []byte, m Message) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(body); err != nil {
		t.Fatal(err)
	}
	if _, err := appendState(f, nil, m); err != nil {
		t.Fatal(err)
	}
}
