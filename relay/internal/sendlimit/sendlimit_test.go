package sendlimit

import (
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func send(t *testing.T, l *Limiter, limits *snapshot.Limits, rcpts int) Limit {
	t.Helper()
	txn, refused := l.Begin("app@example.com", snapshot.ObjectRef{Namespace: "mail", Name: "app"}, limits)
	if refused != None {
		return refused
	}
	for i := 1; i <= rcpts; i++ {
		if refused := txn.AddRecipient(i, limits); refused != None {
			txn.Cancel()
			return refused
		}
	}
	txn.Commit()
	return None
}

func TestWindowLimitDefersUntilTheWindowMovesOn(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	l := New(c.now, nil)
	limits := &snapshot.Limits{MessagesPerWindow: 5, WindowSeconds: 600}
	for i := range 5 {
		if got := send(t, l, limits, 1); got != None {
			t.Fatalf("message %d: %v", i+1, got)
		}
	}
	if got := send(t, l, limits, 1); got != Window {
		t.Fatalf("6th message: %v, want %v", got, Window)
	}
	c.t = c.t.Add(5 * time.Minute)
	if got := send(t, l, limits, 1); got != Window {
		t.Fatalf("within the window: %v", got)
	}
	c.t = c.t.Add(6 * time.Minute) // past the window plus one slot
	if got := send(t, l, limits, 1); got != None {
		t.Fatalf("after the window: %v", got)
	}
}

func TestEachReplicaAdmitsItsShare(t *testing.T) {
	limits := &snapshot.Limits{MessagesPerWindow: 9, WindowSeconds: 600}
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	total := 0
	for range 2 {
		l := New(c.now, func() int { return 2 })
		for send(t, l, limits, 1) == None {
			total++
		}
	}
	// ceil(9/2) = 5 each: the limit plus at most one per replica for the rounding.
	if total != 10 {
		t.Errorf("two replicas admitted %d, want 10", total)
	}
}

func TestCancelGivesReservationsBack(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(c.now, nil)
	limits := &snapshot.Limits{MessagesPerWindow: 1, WindowSeconds: 600, RecipientsPerDay: 3}
	txn, refused := l.Begin("app@example.com", snapshot.ObjectRef{Namespace: "mail", Name: "app"}, limits)
	if refused != None {
		t.Fatal(refused)
	}
	for i := 1; i <= 3; i++ {
		if r := txn.AddRecipient(i, limits); r != None {
			t.Fatal(r)
		}
	}
	if r := txn.AddRecipient(4, limits); r != RecipientsPerDay {
		t.Fatalf("4th recipient: %v", r)
	}
	txn.Cancel() // say the message was refused at DATA
	if got := send(t, l, limits, 3); got != None {
		t.Fatalf("after the cancelled transaction: %v", got)
	}
	if w, m, r := l.Usage("app@example.com"); w != 1 || m != 1 || r != 3 {
		t.Errorf("usage %d %d %d", w, m, r)
	}
}

func TestDailyAndPerMessageLimits(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(c.now, nil)
	limits := &snapshot.Limits{MessagesPerDay: 2, RecipientsPerMessage: 2}
	if got := send(t, l, limits, 3); got != RecipientsPerMessage {
		t.Fatalf("3 recipients: %v", got)
	}
	for range 2 {
		if got := send(t, l, limits, 2); got != None {
			t.Fatal(got)
		}
	}
	if got := send(t, l, limits, 1); got != Day {
		t.Fatalf("3rd message of the day: %v", got)
	}
	c.t = c.t.Add(25 * time.Hour)
	if got := send(t, l, limits, 1); got != None {
		t.Fatalf("a day later: %v", got)
	}
}

func TestUnlimitedAndNilLimitsAdmitEverything(t *testing.T) {
	l := New(nil, nil)
	for range 1000 {
		if got := send(t, l, &snapshot.Limits{}, 5); got != None {
			t.Fatal(got)
		}
		if got := send(t, l, nil, 5); got != None {
			t.Fatal(got)
		}
	}
}

func TestHitsKeepTheLatestPerCredentialAndLimitForAnHour(t *testing.T) {
	var h Hits
	t0 := time.Unix(1_800_000_000, 0)
	src := snapshot.ObjectRef{Namespace: "mail", Name: "app"}
	h.Record("app@example.com", src, Window, t0)
	h.Record("app@example.com", src, Window, t0.Add(time.Minute))
	h.Record("app@example.com", src, Day, t0.Add(2*time.Minute))
	got := h.Recent(t0.Add(3 * time.Minute))
	if len(got) != 2 || got[0].Limit != "messages_per_day" || got[1].Limit != "messages_per_window" || !got[1].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("recent %+v", got)
	}
	for i := range 2 * snapshot.MaxLimitHits {
		h.Record(string(rune('a'+i%26))+string(rune('a'+i/26))+"@example.com", src, Window, t0.Add(3*time.Minute))
	}
	if got := h.Recent(t0.Add(4 * time.Minute)); len(got) != snapshot.MaxLimitHits {
		t.Errorf("%d reported, want the bound %d", len(got), snapshot.MaxLimitHits)
	}
	if got := h.Recent(t0.Add(2 * time.Hour)); len(got) != 0 {
		t.Errorf("after an hour: %+v", got)
	}
}

func TestBusiestReportsTheTopSendersOfTheDay(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(c.now, nil)
	for i, n := range []int{3, 1, 2} {
		user := string(rune('a'+i)) + "@example.com"
		for range n {
			txn, _ := l.Begin(user, snapshot.ObjectRef{Namespace: "mail", Name: user[:1]}, nil)
			txn.AddRecipient(1, nil)
			txn.Commit()
		}
	}
	got := l.Busiest(2)
	if len(got) != 2 || got[0].Username != "a@example.com" || got[0].Messages != 3 || got[0].Credential.Name != "a" || got[1].Username != "c@example.com" {
		t.Fatalf("busiest %+v", got)
	}
	c.t = c.t.Add(26 * time.Hour)
	if got := l.Busiest(2); len(got) != 0 {
		t.Errorf("a day later: %+v", got)
	}
}
