package spool

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// TestIndexDue checks the heap walk against sorting everything, through inserts,
// reschedules and removals.
func TestIndexDue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newIndex()
	want := make(map[string]int64)
	for i := range 2000 {
		id := fmt.Sprintf("%018d", i)
		switch op := rng.IntN(10); {
		case op < 6 || len(want) == 0:
			next := rng.Int64N(1000)
			x.put(id, next, 1)
			want[id] = next
		case op < 8:
			for id := range want { // reschedule an arbitrary one
				want[id] = rng.Int64N(1000)
				x.put(id, want[id], 1)
				break
			}
		default:
			for id := range want {
				x.remove(id)
				delete(want, id)
				break
			}
		}
		if i%97 != 0 {
			continue
		}
		now, limit := rng.Int64N(1100), rng.IntN(50)
		var expect []string
		for id, next := range want {
			if next <= now {
				expect = append(expect, id)
			}
		}
		slices.SortFunc(expect, func(a, b string) int {
			if c := want[a] - want[b]; c != 0 {
				return int(c)
			}
			return compareStrings(a, b)
		})
		if len(expect) > limit {
			expect = expect[:limit]
		}
		if got := x.due(now, limit); !slices.Equal(got, expect) {
			t.Fatalf("step %d: due(%d, %d) = %v, want %v", i, now, limit, got, expect)
		}
		if len(x.byID) != len(want) || len(x.heap) != len(want) {
			t.Fatalf("step %d: index holds %d/%d entries, want %d", i, len(x.byID), len(x.heap), len(want))
		}
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestZeroNextAttemptIsDueAtOnce(t *testing.T) {
	x := newIndex()
	x.put("B", timeKey(time.Now()), 1)
	x.put("A", timeKey(time.Time{}), 1)
	if got := x.due(timeKey(time.Now().Add(-time.Hour)), 10); !slices.Equal(got, []string{"A"}) {
		t.Fatalf("due = %v, want the message with no next attempt", got)
	}
}

func TestDueThroughTheSpool(t *testing.T) {
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	clock := base
	s := openSpool(t, t.TempDir(), Options{Now: func() time.Time { clock = clock.Add(time.Millisecond); return clock }})
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = accept(t, s, i)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids accepted in order do not sort in order: %v", ids)
	}
	// Defer the even messages by an hour, in reverse order of acceptance.
	for i := len(ids) - 2; i >= 0; i -= 2 {
		m, err := s.Get(ids[i])
		if err != nil {
			t.Fatal(err)
		}
		m.NextAttempt = base.Add(time.Hour + time.Duration(len(ids)-i)*time.Minute)
		if err := s.Update(m); err != nil {
			t.Fatal(err)
		}
	}
	tests := map[string]struct {
		now   time.Time
		limit int
		want  []string
	}{
		"nothing is due before the first acceptance": {now: base, limit: 10},
		"only the odd messages are due now":          {now: clock, limit: 10, want: []string{ids[1], ids[3], ids[5]}},
		"the limit keeps the oldest":                 {now: clock, limit: 2, want: []string{ids[1], ids[3]}},
		"deferred messages come last, by next attempt": {
			now: base.Add(2 * time.Hour), limit: 10,
			want: []string{ids[1], ids[3], ids[5], ids[4], ids[2], ids[0]},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, m := range s.Due(tc.now, tc.limit) {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Due = %v, want %v", got, tc.want)
			}
			if ids := s.DueIDs(tc.now, tc.limit); !slices.Equal(ids, tc.want) {
				t.Fatalf("DueIDs = %v, want %v", ids, tc.want)
			}
		})
	}
	if next, ok := s.NextDue(); !ok || !next.Equal(base.Add(2*time.Millisecond)) {
		t.Fatalf("NextDue = %v, %v; want the second acceptance", next, ok)
	}
}

// BenchmarkIndex100k measures the index at 100k queued messages: rescheduling one and
// asking for the next 100 due.
// It also reports the index's heap footprint per queued message.
func BenchmarkIndex100k(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newIndex()
	for i := range 100_000 {
		x.put(newID(time.Now()), int64(i), 4096)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	ids := make([]string, 0, len(x.byID))
	for id := range x.byID {
		ids = append(ids, id)
	}
	for i := 0; b.Loop(); i++ {
		x.put(ids[i%len(ids)], int64(100_000+i), 4096)
		if len(x.due(int64(100_000+i), 100)) == 0 {
			b.Fatal("nothing due")
		}
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100_000, "index-B/msg")
}
