package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

func seqs(b discoverystate.Batch) []uint64 {
	var out []uint64
	for _, o := range b.Observations {
		out = append(out, o.Seq)
	}
	return out
}

func TestJournalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	for _, a := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		if err := j.Record(discoverystate.Delivered, a, epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := j.Record(discoverystate.Verified, "d@example.com", epoch); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()

	j, err = OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.ID() != id {
		t.Fatalf("identity changed across a restart: %s, was %s", j.ID(), id)
	}
	b := j.Batch("relay-0", 1<<20)
	if got := seqs(b); len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Fatalf("replayed sequence numbers %v, want [2 3 4]", got)
	}
	if b.Observations[2].Address != "d@example.com" || b.Observations[2].Kind != discoverystate.Verified {
		t.Fatalf("replayed %+v", b.Observations[2])
	}
	// Sequence numbers continue after the replay, even once everything is acknowledged.
	if err := j.Ack(4); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	j, err = OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Record(discoverystate.Delivered, "e@example.com", epoch); err != nil {
		t.Fatal(err)
	}
	if got := seqs(j.Batch("relay-0", 1<<20)); len(got) != 1 || got[0] != 5 {
		t.Fatalf("sequence after restart %v, want [5]", got)
	}
}

func TestJournalDropsATornTail(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	_ = j.Record(discoverystate.Delivered, "a@example.com", epoch)
	_ = j.Close()
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":2,"kind":"Deliv`)
	_ = f.Close()

	j, err = OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Record(discoverystate.Delivered, "b@example.com", epoch); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	j, err = OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := j.Batch("r", 1<<20)
	if len(b.Observations) != 2 || b.Observations[1].Address != "b@example.com" || b.Observations[1].Seq != 2 {
		t.Fatalf("after a torn write: %+v", b.Observations)
	}
}

func TestJournalBounds(t *testing.T) {
	j, err := OpenJournal(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for range 2 {
		if err := j.Record(discoverystate.Delivered, "a@example.com", epoch); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Record(discoverystate.Delivered, "a@example.com", epoch); err != ErrJournalFull {
		t.Fatalf("third record: %v, want ErrJournalFull", err)
	}
	if b := j.Batch("r", 1); len(b.Observations) != 1 {
		t.Fatalf("a batch smaller than one observation holds %d, want 1", len(b.Observations))
	}
}

func TestJournalRefusesAForeignFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, JournalFile), []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenJournal(dir, 0); err == nil {
		t.Fatal("opened a file without a journal header")
	}
}

func TestJournalConcurrentRecordsKeepEveryObservation(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := j.Record(discoverystate.Delivered, fmt.Sprintf("w%d-%d@example.com", w, i), epoch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Acknowledgements race with the writers; nothing unacknowledged may be lost.
	wg.Go(func() {
		for range 5 {
			b := j.Batch("r", 1<<20)
			if n := len(b.Observations); n > 0 {
				if err := j.Ack(b.Observations[n/2].Seq); err != nil {
					t.Error(err)
				}
			}
		}
	})
	wg.Wait()
	acked := j.acked
	_ = j.Close()
	j, err = OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got := seqs(j.Batch("r", 1<<30))
	if uint64(len(got)) != writers*each-acked {
		t.Fatalf("%d observations after reopening, want %d (%d written, %d acknowledged)", len(got), writers*each-acked, writers*each, acked)
	}
	for i, s := range got {
		if s != acked+1+uint64(i) {
			t.Fatalf("sequence %v has a gap or repeat at %d", got, i)
		}
	}
}
