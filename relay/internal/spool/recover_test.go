package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	keep := []string{accept(t, s, 1), accept(t, s, 2)}
	truncated := accept(t, s, 3)
	noBody := accept(t, s, 4)
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
	// What crashed writers leave: half-written temp files and an orphan body.
	write(filepath.Join(dir, tmpDir, "01KAPW3Q5R00000000.body"), testBody(9)[:50])
	write(filepath.Join(dir, tmpDir, "01KAPW3Q5R00000000.json"), []byte(`{"version":1,"mess`))
	write(filepath.Join(dir, tmpDir, keep[0]+".u7.json"), []byte(`{`))
	orphan := "01KAPW3Q5R11111111"
	write(filepath.Join(q, orphan+".body"), testBody(9))
	// What must never be delivered: a body shorter than its state says, a state
	// without body, a state that does not parse.
	if err := os.Truncate(filepath.Join(q, truncated+".body"), 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(q, noBody+".body")); err != nil {
		t.Fatal(err)
	}
	garbled := "01KAPW3Q5R22222222"
	write(filepath.Join(q, garbled+".json"), []byte("not json"))
	write(filepath.Join(q, garbled+".body"), testBody(9))

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
		want = append(want, id+".body", id+".json")
	}
	slices.Sort(want)
	if got := queueFiles(t, dir); !slices.Equal(got, want) {
		t.Fatalf("queue after recovery = %v, want %v", got, want)
	}
	wantCorrupt := []string{garbled + ".body", garbled + ".json", truncated + ".body", truncated + ".json", noBody + ".json"}
	slices.Sort(wantCorrupt)
	if got := dirNames(t, filepath.Join(dir, corruptDir)); !slices.Equal(got, wantCorrupt) {
		t.Fatalf("corrupt/ = %v, want %v", got, wantCorrupt)
	}
}
