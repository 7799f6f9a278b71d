package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	keep := []string{accept(t, s, 1), accept(t, s, 2)}
	truncated := accept(t, s, 3)
	noFooter := accept(t, s, 4)
	garbled := accept(t, s, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	q := filepath.Join(dir, queueDir)
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What crashed writers leave: half-written temp files, a later state whose message
	// file Remove had unlinked already, and a body of the old layout alone.
	write(filepath.Join(dir, tmpDir, "01KAPW3Q5R00000000.msg"), testBody(9)[:50])
	write(filepath.Join(dir, tmpDir, keep[0]+".u7.json"), []byte(`{`))
	orphan := "01KAPW3Q5R11111111"
	write(filepath.Join(q, orphan+".json"), []byte(`{"version":1}`))
	oldOrphan := "01KAPW3Q5R33333333"
	write(filepath.Join(q, oldOrphan+".body"), testBody(9))
	// What must never be delivered: a message file shorter than its footer says, one
	// without a footer, and a later state that does not parse.
	if err := os.Truncate(filepath.Join(q, truncated+".msg"), 10); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(q, noFooter+".msg"), testBody(9))
	write(filepath.Join(q, garbled+".json"), []byte("not json"))

	s = openSpool(t, dir, Options{})
	if s.Len() != len(keep) {
		t.Fatalf("Len after recovery = %d, want %d", s.Len(), len(keep))
	}
	for i, id := range keep {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("committed message %s lost: %v", id, err)
		}
		if got := readBody(t, s, id); !bytes.Equal(got, testBody(i+1)) {
			t.Fatalf("body of %s changed", id)
		}
	}
	if files := tmpFiles(t, dir); len(files) != 0 {
		t.Fatalf("tmp after recovery holds %v, want nothing", files)
	}
	var want []string
	for _, id := range keep {
		want = append(want, id+".msg")
	}
	slices.Sort(want)
	if got := queueFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("queue after recovery = %v, want %v", got, want)
	}
	wantCorrupt := []string{garbled + ".json", garbled + ".msg", noFooter + ".msg", truncated + ".msg"}
	slices.Sort(wantCorrupt)
	if got := dirNames(t, filepath.Join(dir, corruptDir)); !slices.Equal(got, wantCorrupt) {
		t.Fatalf("corrupt/ = %v, want %v", got, wantCorrupt)
	}
}

// A spool written before message files (ID.body and ID.json) is converted at Open:
// the same messages with the same bodies and states, each in one message file.
func TestRecoveryConvertsOldLayout(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, queueDir)
	if err := os.MkdirAll(q, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Round(0)
	ids := []string{newID(now), newID(now.Add(time.Millisecond))}
	for i, id := range ids {
		body := testBody(i)
		m := Message{ID: id, Envelope: testEnvelope(), Size: int64(len(body)), Attempts: i + 2, NextAttempt: now,
			Recipients: []RecipientState{{Address: "bob@example.net", Status: StatusPending, Attempts: i + 2}}}
		if err := os.WriteFile(filepath.Join(q, id+".body"), body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := writeState(filepath.Join(q, id+".json"), m); err != nil {
			t.Fatal(err)
		}
	}
	// The second one's conversion crashed after its message file was renamed into place.
	m, err := readState(filepath.Join(q, ids[1]+".json"))
	if err != nil {
		t.Fatal(err)
	}
	writeMessageFileForTest(t, filepath.Join(q, ids[1]+".msg"), testBody(1), m)

	s := openSpool(t, dir, Options{})
	if s.Len() != 2 {
		t.Fatalf("Len after conversion = %d, want 2", s.Len())
	}
	for i, id := range ids {
		m, err := s.Get(id)
		if err != nil {
			t.Fatalf("converted message %s lost: %v", id, err)
		}
		if m.Attempts != i+2 || m.Recipients[0].Attempts != i+2 {
			t.Fatalf("converted message %s has state %+v, want %d attempts", id, m, i+2)
		}
		if got := readBody(t, s, id); !bytes.Equal(got, testBody(i)) {
			t.Fatalf("body of converted message %s changed", id)
		}
	}
	want := []string{ids[0] + ".json", ids[0] + ".msg", ids[1] + ".json", ids[1] + ".msg"}
	if got := queueFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("queue after conversion = %v, want %v", got, want)
	}
	// A converted message is removed like any other.
	for _, id := range ids {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if got := queueFiles(t, dir); len(got) != 0 {
		t.Fatalf("queue after removing both = %v", got)
	}
}
