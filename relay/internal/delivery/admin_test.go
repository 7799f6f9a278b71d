package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/test/testkit"
)

// deferring starts an MX for dest.example that answers every RCPT with a 451, and a
// runner over it; the message accepted to it has had its first attempt.
func deferring(t *testing.T) (*harness, *testkit.Server, string) {
	t.Helper()
	h := newHarness(t, Retry{First: 10 * time.Minute, DelayNotice: -1})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.Inject(testkit.StageRcpt, testkit.Reply(451, "4.3.0", "try again later"), -1)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	h.waitAttempt(id, 1)
	// The outcome is written a moment before the runner lets go of the message.
	eventually(t, "the attempt to end", func() bool { return !h.runner.Admin().InFlight(id) })
	return h, dest, id
}

func TestAdminHoldKeepsAMessageFromBeingAttemptedUntilReleased(t *testing.T) {
	h, dest, id := deferring(t)
	admin := h.runner.Admin()
	if changed, err := admin.Hold(id); err != nil || !changed {
		t.Fatalf("Hold = %v, %v; want true, nil", changed, err)
	}
	if changed, err := admin.Hold(id); err != nil || changed {
		t.Fatalf("Hold of a held message = %v, %v; want false, nil", changed, err)
	}
	if _, err := admin.Retry(id); !errors.Is(err, ErrHeld) {
		t.Fatalf("Retry of a held message = %v, want ErrHeld", err)
	}
	counts, err := admin.RetryAll()
	if err != nil || counts != (RetryCounts{Held: 1}) {
		t.Fatalf("RetryAll = %+v, %v; want the one message counted as held", counts, err)
	}

	// Long past its next attempt, the runner delivers a later message and leaves the
	// held one alone: it would have come first.
	connections := dest.Connections()
	h.clock.Advance(2 * time.Hour)
	other := h.mx("other.example", "mx.other.example", 10)
	h.waitGone(h.accept("alice@a.example", "c@other.example"))
	if n := dest.Connections(); n != connections {
		t.Fatalf("the held message was attempted: %d connections to its MX, want %d", n, connections)
	}
	if m, err := h.spool.Get(id); err != nil || !m.Held || m.Attempts != 1 {
		t.Fatalf("held message = %+v, %v; want held after its one attempt", m, err)
	}
	if len(other.Messages()) != 1 {
		t.Fatal("the other message was not delivered")
	}

	// Released, it is due at once (its next attempt has passed) and delivered once.
	dest.Inject(testkit.StageRcpt, nil, 0)
	if changed, err := admin.Release(id); err != nil || !changed {
		t.Fatalf("Release = %v, %v; want true, nil", changed, err)
	}
	h.waitGone(id)
	if n := len(dest.Messages()); n != 1 {
		t.Fatalf("%d messages delivered to dest.example, want 1", n)
	}
	eventually(t, "the runner to let go of the message", func() bool { return !admin.InFlight(id) })
	if _, err := admin.Release(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Release of a delivered message = %v, want ErrNotFound", err)
	}
}

// A command never changes a message in the middle of its delivery attempt: it is
// refused with ErrInFlight, and retry has nothing to do.
func TestAdminRefusesAMessageBeingDelivered(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	release := dest.HoldData()
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	eventually(t, "the delivery to reach DATA", func() bool { return dest.Held() == 1 })

	admin := h.runner.Admin()
	if !admin.InFlight(id) {
		t.Error("InFlight = false during the attempt")
	}
	for name, cmd := range map[string]func() error{
		"hold":    func() error { _, err := admin.Hold(id); return err },
		"release": func() error { _, err := admin.Release(id); return err },
		"delete":  func() error { return admin.Delete(id) },
		"bounce":  func() error { _, err := admin.Bounce(context.Background(), id); return err },
	} {
		if err := cmd(); !errors.Is(err, ErrInFlight) {
			t.Errorf("%s during the attempt = %v, want ErrInFlight", name, err)
		}
	}
	if inFlight, err := admin.Retry(id); !inFlight || err != nil {
		t.Errorf("Retry during the attempt = %v, %v; want true, nil", inFlight, err)
	}
	release()
	h.waitGone(id)
	if n := len(dest.Messages()); n != 1 {
		t.Fatalf("%d deliveries, want exactly 1", n)
	}
	// The runner lets go of the message a moment after removing it.
	eventually(t, "InFlight to end after the message left", func() bool { return !admin.InFlight(id) })
}

func TestAdminRetryMakesADeferredMessageDueNow(t *testing.T) {
	h, dest, id := deferring(t)
	dest.Inject(testkit.StageRcpt, nil, 0)
	if inFlight, err := h.runner.Admin().Retry(id); inFlight || err != nil {
		t.Fatalf("Retry = %v, %v; want false, nil", inFlight, err)
	}
	// The clock has not moved: only the retry made it due.
	h.waitGone(id)
	if n := len(dest.Messages()); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}

func TestAdminDeleteRemovesAMessageAndTellsNobody(t *testing.T) {
	h, _, id := deferring(t)
	if err := h.runner.Admin().Delete(id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := h.spool.Get(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	// A bounce would be in the spool by now: it is queued before a removal.
	if n := h.spool.Len(); n != 0 {
		t.Fatalf("%d messages queued after the delete, want 0", n)
	}
	if err := h.runner.Admin().Delete(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
}

// A bounce goes through the runner's own path: the sender gets the DSN an expiry
// would send, saying who cancelled the delivery but not the administrator's reason.
func TestAdminBounceSendsTheSenderADSN(t *testing.T) {
	h, _, id := deferring(t)
	notified, err := h.runner.Admin().Bounce(context.Background(), id)
	if err != nil || !notified {
		t.Fatalf("Bounce = %v, %v; want true, nil", notified, err)
	}
	if _, err := h.spool.Get(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Get after Bounce = %v, want ErrNotFound", err)
	}
	r := parseReport(t, h.sender.WaitMessages(t, 1, 15*time.Second)[0])
	if len(r.recipients) != 1 {
		t.Fatalf("%d recipients in the DSN, want 1", len(r.recipients))
	}
	rc := r.recipients[0]
	if rc.Get("Final-Recipient") != "rfc822; b@dest.example" || rc.Get("Action") != "failed" || rc.Get("Status") != "5.0.0" ||
		!strings.Contains(rc.Get("Diagnostic-Code"), bounceReason) {
		t.Errorf("DSN recipient block = %v", rc)
	}
	if r.from != "" || r.header.Get("To") != "<alice@a.example>" {
		t.Errorf("DSN from %q to %q", r.from, r.header.Get("To"))
	}
	if got := testutil.ToFloat64(h.metrics.Notifications.WithLabelValues("bounce")); got != 1 {
		t.Errorf("%v bounces counted, want 1", got)
	}
}

// A relay that does not deliver can hold, release and delete, but not retry or bounce:
// nothing would attempt the message or send the DSN.
func TestAdminWithoutDeliveryRefusesRetryAndBounce(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	id, err := sp.Accept(context.Background(), spool.Envelope{Sender: "a@a.example", Recipients: []string{"b@b.example"}},
		strings.NewReader(message("test")))
	if err != nil {
		t.Fatal(err)
	}
	admin := NewAdmin(sp)
	if _, err := admin.Retry(id); !errors.Is(err, ErrDeliveryOff) {
		t.Errorf("Retry = %v, want ErrDeliveryOff", err)
	}
	if _, err := admin.Bounce(context.Background(), id); !errors.Is(err, ErrDeliveryOff) {
		t.Errorf("Bounce = %v, want ErrDeliveryOff", err)
	}
	if changed, err := admin.Hold(id); !changed || err != nil {
		t.Errorf("Hold = %v, %v", changed, err)
	}
	if err := admin.Delete(id); err != nil {
		t.Errorf("Delete = %v", err)
	}
}

func TestClaimsKeepTheRunnerAndCommandsApart(t *testing.T) {
	c := newClaims()
	if c.take("a", byDelivery) != unclaimed {
		t.Fatal("the runner could not claim a free message")
	}
	if got := c.take("a", byCommand); got != byDelivery {
		t.Fatalf("a command claimed a message in delivery: holder %v", got)
	}
	c.release("a", byDelivery)
	if c.reread("a") {
		t.Error("the runner's own release asks it to read the message again")
	}
	if c.take("a", byCommand) != unclaimed {
		t.Fatal("a command could not claim a delivered message")
	}
	if got := c.take("a", byDelivery); got != byCommand {
		t.Fatalf("the runner claimed a message a command holds: holder %v", got)
	}
	c.release("a", byCommand)
	// Changed by the command: the runner must read it again before it may deliver it.
	if got := c.take("a", byDelivery); got != byCommand {
		t.Fatalf("the runner claimed a changed message it has not read again: holder %v", got)
	}
	if !c.reread("a") || c.reread("a") {
		t.Fatal("reread does not report the change exactly once")
	}
	if c.take("a", byDelivery) != unclaimed {
		t.Fatal("the runner could not claim the message after reading it again")
	}
	c.release("a", byDelivery)
	c.take("b", byCommand)
	c.drop("b")
	if len(c.owner) != 0 || len(c.changed) != 0 {
		t.Errorf("claims left behind: owners %v, changed %v", c.owner, c.changed)
	}
}

// Commands hammering messages while the runner delivers them: every message is
// delivered exactly once in the end, whatever order the claims came in.
func TestAdminCommandsRacingDeliveryNeitherLoseNorDuplicate(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	const n = 40
	var ids []string
	for i := range n {
		id, err := h.spool.Accept(context.Background(), spool.Envelope{Sender: "alice@a.example",
			Recipients: []string{"b@dest.example"}, Direction: DirectionOutbound}, strings.NewReader(message(fmt.Sprint(i))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	admin := h.runner.Admin()
	h.start()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 5 {
				for k, id := range ids {
					var err error
					switch (k + w + round) % 3 {
					case 0:
						_, err = admin.Hold(id)
					case 1:
						_, err = admin.Release(id)
					default:
						_, err = admin.Retry(id)
					}
					if err != nil && !errors.Is(err, ErrInFlight) && !errors.Is(err, ErrBusy) &&
						!errors.Is(err, ErrHeld) && !errors.Is(err, spool.ErrNotFound) {
						t.Errorf("command on %s: %v", id, err)
					}
				}
			}
		})
	}
	wg.Wait()
	// Whatever is still held is released; then everything leaves, delivered.
	for _, id := range ids {
		eventually(t, "releasing "+id, func() bool {
			_, err := admin.Release(id)
			return err == nil || errors.Is(err, spool.ErrNotFound)
		})
	}
	eventually(t, "an empty spool", func() bool { return h.spool.Len() == 0 })
	seen := map[string]int{}
	for _, m := range dest.Messages() {
		seen[subjectOf(m.Data)]++
	}
	for i := range n {
		if got := seen[fmt.Sprint(i)]; got != 1 {
			t.Errorf("message %d was delivered %d times, want 1", i, got)
		}
	}
}

func subjectOf(data []byte) string {
	for line := range strings.SplitSeq(string(data), "\r\n") {
		if s, ok := strings.CutPrefix(line, "Subject: "); ok {
			return s
		}
	}
	return ""
}
