package delivery

import (
	"log/slog"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestReplyParts(t *testing.T) {
	cases := map[string]struct {
		in       RecipientResult
		code     int
		wantText string
	}{
		"a reply with an enhanced code loses both codes":  {RecipientResult{Reply: "550 5.1.1 no such user"}, 550, "no such user"},
		"a reply without an enhanced code loses its code": {RecipientResult{Reply: "451 try later"}, 451, "try later"},
		"a decision made here has code 0 and the reason":  {RecipientResult{Reason: "no MX (x.example)"}, 0, "no MX (x.example)"},
		"a refused greeting keeps the reason naming the host": {
			RecipientResult{Reply: "554 5.7.1 go away", Reason: "mx.x.example refused at greeting"}, 554,
			"mx.x.example refused at greeting: go away"},
		"text that only looks like a code stays": {RecipientResult{Reply: "250 2.0 ok"}, 250, "2.0 ok"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, text := tc.in.replyParts()
			if code != tc.code || text != tc.wantText {
				t.Errorf("replyParts(%+v) = %d, %q; want %d, %q", tc.in, code, text, tc.code, tc.wantText)
			}
		})
	}
}

// Each attempt writes one line per recipient, and giving up writes expired and then the
// bounce's dsn_sent; the bounce's own delivery goes under the DSN's queue id.
func TestTrackingLinesUntilExpiry(t *testing.T) {
	h := newHarness(t, Retry{First: 10 * time.Minute, Lifetime: time.Hour, DelayNotice: -1})
	logs := &testkit.LogBuffer{}
	h.runner.log = slog.New(slog.NewJSONHandler(logs, nil))
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.Inject(testkit.StageRcpt, testkit.Reply(451, "4.3.0", "try again later"), -1)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	attempts := 0
	for {
		m, gone := h.waitAttemptOrGone(id, attempts+1)
		attempts++
		if gone || m.Recipients[0].Status != spool.StatusPending {
			break
		}
		h.clock.Advance(m.NextAttempt.Sub(h.clock.Now()))
	}
	h.sender.WaitMessages(t, 1, 15*time.Second)
	eventually(t, "the bounce's delivered line", func() bool { return len(trackingEvents(logs, "delivered")) == 1 })

	deferred, expired := trackingEvents(logs, "deferred"), trackingEvents(logs, "expired")
	if len(deferred) != attempts-1 || len(expired) != 1 {
		t.Fatalf("%d deferred and %d expired lines for %d attempts", len(deferred), len(expired), attempts)
	}
	last := expired[0]
	for k, want := range map[string]any{
		"queue_id": id, "sender": "alice@a.example", "recipient": "b@dest.example", "direction": "outbound",
		"attempt": float64(attempts), "remote_host": "mx.dest.example", "remote_ip": "127.0.0.1",
		"reply_code": float64(451), "enhanced_code": "4.3.0", "reply": "try again later",
		"tls_version": "none", "tls_verified": false, "tls_policy": "default", "tls_mode": "Opportunistic",
	} {
		if last[k] != want {
			t.Errorf("expired line: %s = %v, want %v (line %v)", k, last[k], want, last)
		}
	}
	if d, _ := last["delay_seconds"].(float64); d < 3600 {
		t.Errorf("expired line: delay_seconds = %v, want the hour's lifetime", last["delay_seconds"])
	}
	dsn := trackingEvents(logs, "dsn_sent")
	if len(dsn) != 1 || dsn[0]["queue_id"] != id || dsn[0]["dsn_kind"] != "bounce" || dsn[0]["to"] != "alice@a.example" {
		t.Fatalf("dsn_sent lines: %v", dsn)
	}
	if got := trackingEvents(logs, "delivered")[0]; got["queue_id"] != dsn[0]["dsn_queue_id"] || got["sender"] != "" ||
		got["direction"] != "inbound" {
		t.Errorf("the bounce's delivery: %v, want queue_id %v from the null sender", got, dsn[0]["dsn_queue_id"])
	}
}

// trackingEvents returns the tracking lines of one event.
func trackingEvents(logs *testkit.LogBuffer, event string) []map[string]any {
	var out []map[string]any
	for _, rec := range logs.Records("message") {
		if rec["event"] == event {
			out = append(out, rec)
		}
	}
	return out
}
