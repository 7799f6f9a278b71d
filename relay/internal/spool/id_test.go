package spool

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	seen := make(map[string]bool)
	for range 10_000 { // all in one millisecond: only the random part differs
		id := newID(t0)
		if !validID(id) {
			t.Fatalf("newID = %q, not valid", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	for name, tc := range map[string]struct{ a, b time.Time }{
		"a later millisecond sorts later":     {t0, t0.Add(time.Millisecond)},
		"a later year sorts later":            {t0, t0.AddDate(1, 0, 0)},
		"a far future time still sorts later": {t0, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(name, func(t *testing.T) {
			if a, b := newID(tc.a), newID(tc.b); a >= b {
				t.Fatalf("%s (at %v) does not sort before %s (at %v)", a, tc.a, b, tc.b)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	for name, tc := range map[string]struct {
		id   string
		want bool
	}{
		"a generated id is valid":    {newID(time.Now()), true},
		"lowercase is not":           {strings.ToLower(newID(time.Now())), false},
		"a path is not":              {"../../etc/passwd0", false},
		"an ambiguous letter is not": {"01KAPW3Q5R0000000I", false},
		"a short id is not":          {"01KAPW3Q5R", false},
		"an id with a dot is not":    {"01KAPW3Q5R.0000000", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := validID(tc.id); got != tc.want {
				t.Fatalf("validID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

// TestFullDisk writes a body to /dev/full, which fails every write with ENOSPC.
func TestFullDisk(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer f.Close()
	_, _, err = copyBody(context.Background(), f, io.LimitReader(zeros{}, 64<<10), make([]byte, 32<<10))
	if !errors.Is(err, ErrInsufficientStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("copyBody to a full disk: err = %v, want ErrInsufficientStorage wrapping ENOSPC", err)
	}
	// A body that fits the buffer is written with the state.
	_, err = appendState(f, make([]byte, 100), Message{ID: "01KAPW3Q5R0000000", Size: 100})
	if !errors.Is(err, ErrInsufficientStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("appendState to a full disk: err = %v, want ErrInsufficientStorage wrapping ENOSPC", err)
	}
	if err := storageErr("x", syscall.EIO); errors.Is(err, ErrInsufficientStorage) {
		t.Fatalf("an I/O error was reported as a full disk: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
