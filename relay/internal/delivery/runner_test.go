package delivery

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestRunnerDeliversByDomain(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	other := h.mx("other.example", "mx.other.example", 10)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example", "x@other.example", "c@dest.example", "bob@a.example")
	h.waitGone(id)
	if m := dest.Messages(); len(m) != 1 || !slices.Equal(m[0].To, []string{"b@dest.example", "c@dest.example"}) {
		t.Fatalf("dest.example got %+v, want one transaction for both recipients", m)
	}
	if m := other.Messages(); len(m) != 1 || m[0].From != "alice@a.example" {
		t.Fatalf("other.example got %+v", m)
	}
	if m := h.sender.Messages(); len(m) != 1 || !slices.Equal(m[0].To, []string{"bob@a.example"}) {
		t.Fatalf("a managed domain's recipient did not go to its inbound server: %+v", m)
	}
	eventually(t, "an empty spool", func() bool { return h.spool.Len() == 0 })
	if got := testutil.ToFloat64(h.metrics.Recipients.WithLabelValues(DirectionOutbound, "delivered")); got != 3 {
		t.Fatalf("outbound delivered = %v, want 3", got)
	}
}

func TestRunnerRetriesAfter4xx(t *testing.T) {
	h := newHarness(t, Retry{First: 5 * time.Minute, Jitter: 0.1})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.Inject(testkit.StageRcpt, testkit.Reply(451, "4.7.1", "greylisted"), 1)
	h.start()
	t0 := h.clock.Now()
	id := h.accept("alice@a.example", "b@dest.example")

	m := h.waitAttempt(id, 1)
	rs := m.Recipients[0]
	if rs.Status != spool.StatusPending || !strings.Contains(rs.LastReply, "451 4.7.1 greylisted") {
		t.Fatalf("after a 451: %+v", rs)
	}
	if d := m.NextAttempt.Sub(t0); d < 4*time.Minute+30*time.Second || d > 5*time.Minute+30*time.Second {
		t.Fatalf("next attempt after %v, want 5m ±10%%", d)
	}
	if len(dest.Messages()) != 0 {
		t.Fatal("delivered despite the 451")
	}
	h.clock.Advance(6 * time.Minute)
	h.waitGone(id)
	if len(dest.Messages()) != 1 || len(h.sender.Messages()) != 0 {
		t.Fatalf("%d delivered, %d notices", len(dest.Messages()), len(h.sender.Messages()))
	}
}

func TestRunnerBouncesA5xx(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.RejectRcpt("gone@dest.example", testkit.Reply(550, "5.1.1", "no such user"))
	h.start()
	id := h.accept("alice@a.example", "gone@dest.example", "ok@dest.example")
	h.waitGone(id)
	bounces := h.sender.WaitMessages(t, 1, 15*time.Second)
	if len(bounces) != 1 {
		t.Fatalf("%d bounces", len(bounces))
	}
	r := parseReport(t, bounces[0])
	checks := map[string]struct{ got, want string }{
		"the bounce comes from the null sender": {r.from, ""},
		"the bounce goes to the sender":         {r.header.Get("To"), "<alice@a.example>"},
		"only the failed recipient is reported": {r.recipients[0].Get("Final-Recipient"), "rfc822; gone@dest.example"},
		"the action is failed":                  {r.recipients[0].Get("Action"), "failed"},
		"the status is the remote one":          {r.recipients[0].Get("Status"), "5.1.1"},
		"the remote MTA is the MX host":         {r.recipients[0].Get("Remote-MTA"), "dns; mx.dest.example"},
		"the diagnostic is the remote reply":    {r.recipients[0].Get("Diagnostic-Code"), "smtp; 550 5.1.1 no such user"},
		"the original headers are attached":     {boolString(strings.Contains(r.headers, "Subject: test\r\n") && !strings.Contains(r.headers, "Hello.")), "true"},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", name, c.got, c.want)
		}
	}
	if len(r.recipients) != 1 {
		t.Errorf("%d recipients in the report, want 1", len(r.recipients))
	}
	if m := dest.Messages(); len(m) != 1 || !slices.Equal(m[0].To, []string{"ok@dest.example"}) {
		t.Errorf("the accepted recipient was not delivered: %+v", m)
	}
}

func TestRunnerNeverBouncesTheNullSender(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.RejectRcpt("gone@dest.example", testkit.Reply(550, "5.1.1", "no such user"))
	h.start()
	id := h.accept("", "gone@dest.example")
	h.waitGone(id)
	// A bounce would have been queued before the removal, and counted.
	eventually(t, "an empty spool", func() bool { return h.spool.Len() == 0 })
	if got := testutil.ToFloat64(h.metrics.Notifications.WithLabelValues("bounce")); got != 0 {
		t.Fatalf("%v bounces counted", got)
	}
	if got := testutil.ToFloat64(h.metrics.Recipients.WithLabelValues(DirectionOutbound, "bounced")); got != 1 {
		t.Fatalf("bounced recipients = %v, want 1", got)
	}
}

func TestRunnerExpiresAfterLifetime(t *testing.T) {
	h := newHarness(t, Retry{First: 10 * time.Minute, Lifetime: time.Hour, DelayNotice: -1})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.Inject(testkit.StageRcpt, testkit.Reply(451, "4.3.0", "try again later"), -1)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	for attempt := 1; ; attempt++ {
		if attempt > 10 {
			t.Fatal("the message outlived its lifetime by far")
		}
		m, gone := h.waitAttemptOrGone(id, attempt)
		if gone || m.Recipients[0].Status != spool.StatusPending {
			break
		}
		h.clock.Advance(m.NextAttempt.Sub(h.clock.Now()))
	}
	h.waitGone(id)
	bounces := h.sender.WaitMessages(t, 1, 15*time.Second)
	r := parseReport(t, bounces[0])
	rc := r.recipients[0]
	if rc.Get("Action") != "failed" || rc.Get("Status") != "4.4.7" ||
		!strings.Contains(rc.Get("Diagnostic-Code"), "451 4.3.0 try again later") {
		t.Fatalf("expiry report: %v", rc)
	}
	if age := h.clock.Now().Sub(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)); age < time.Hour || age > time.Hour+time.Minute {
		t.Fatalf("gave up after %v, want at the one-hour lifetime", age)
	}
	if got := testutil.ToFloat64(h.metrics.Recipients.WithLabelValues(DirectionOutbound, "expired")); got != 1 {
		t.Fatalf("expired = %v", got)
	}
}

func TestRunnerSendsOneDelayNotice(t *testing.T) {
	h := newHarness(t, Retry{First: 10 * time.Minute, Factor: 1, DelayNotice: 25 * time.Minute})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.Inject(testkit.StageRcpt, testkit.Reply(451, "4.3.0", "busy"), -1)
	h.start()
	id := h.accept("alice@a.example", "b@dest.example")
	var m spool.Message
	for attempt := 1; attempt <= 6; attempt++ {
		m = h.waitAttempt(id, attempt)
		h.clock.Advance(m.NextAttempt.Sub(h.clock.Now()))
	}
	m = h.waitAttempt(id, 7)
	if !m.DelayNotified {
		t.Fatal("no delay notice recorded")
	}
	notices := h.sender.WaitMessages(t, 1, 15*time.Second)
	eventually(t, "the spool to hold only the undelivered message", func() bool { return h.spool.Len() == 1 })
	if n := len(h.sender.Messages()); n != 1 {
		t.Fatalf("%d notices, want exactly one", n)
	}
	rc := parseReport(t, notices[0]).recipients[0]
	if rc.Get("Action") != "delayed" || rc.Get("Status") != "4.3.0" || rc.Get("Will-Retry-Until") == "" {
		t.Fatalf("delay notice: %v", rc)
	}
}

func TestRunnerAppliesTLSPolicies(t *testing.T) {
	ca := testkit.NewCA(t)
	var inbound *testkit.Server
	h := newHarness(t, Retry{}, func(s *snapshot.Snapshot) {
		s.TLSPolicies = []snapshot.TLSPolicy{
			{Source: snapshot.ObjectRef{Namespace: "ns", Name: "strict-partner"}, Direction: snapshot.DirectionOutbound,
				Domains: []string{"a.example"}, Destinations: []string{"partner.example"},
				Mode: snapshot.ModeRequireTLS, MinVersion: "1.2"},
			{Source: snapshot.ObjectRef{Namespace: "ns", Name: "m-inbound"}, Direction: snapshot.DirectionInbound,
				Domains: []string{"m.example"}, Mode: snapshot.ModeRequireVerifiedTLS, MinVersion: "1.2", CABundlePEM: ca.PEM()},
		}
	})
	partner := h.mx("partner.example", "mx.partner.example", 10) // offers no STARTTLS
	inbound = testkit.Start(t, testkit.WithCertificate(ca.Leaf(t, "mail.m.example")))
	h.dns.Add(t, "mail.m.example. A 127.0.0.1")
	snap := *h.snap
	snap.Domains = append(slices.Clone(snap.Domains), snapshot.Domain{
		Name: "m.example", InboundDelivery: &snapshot.Endpoint{Host: "mail.m.example", Port: inbound.Port},
	})
	h.load(&snap)
	h.start()

	id := h.accept("alice@a.example", "p@partner.example", "u@m.example")
	m := h.waitAttempt(id, 1)
	var p spool.RecipientState
	for _, rs := range m.Recipients {
		if rs.Address == "p@partner.example" {
			p = rs
		}
	}
	if p.Status != spool.StatusPending || !strings.Contains(p.LastReply, "TLS required but mx.partner.example does not offer STARTTLS") {
		t.Fatalf("the Outbound RequireTLS policy was not applied: %+v", p)
	}
	if len(partner.Messages()) != 0 {
		t.Fatal("mail went in plaintext despite RequireTLS")
	}
	got := inbound.WaitMessages(t, 1, 15*time.Second)
	if got[0].TLS == nil || !slices.Equal(got[0].To, []string{"u@m.example"}) {
		t.Fatalf("inbound delivery: %+v", got[0])
	}
	if v := testutil.ToFloat64(h.metrics.TLS.WithLabelValues("ns/m-inbound", "TLS1.3", "TLS_AES_128_GCM_SHA256", "true")); v != 1 {
		t.Fatalf("verified TLS transactions under ns/m-inbound = %v, want 1", v)
	}
	if v := testutil.ToFloat64(h.metrics.Recipients.WithLabelValues(DirectionInbound, "delivered")); v != 1 {
		t.Fatalf("inbound delivered = %v", v)
	}
}

func TestRunnerCountsInterruptedAttempts(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	id := h.accept("alice@a.example", "b@dest.example")
	// What a crash right after the attempt was written down leaves behind.
	m, err := h.spool.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Attempts = 1
	if err := h.spool.Update(m); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitGone(id)
	if len(dest.Messages()) != 1 {
		t.Fatal("the interrupted message was not delivered")
	}
	if v := testutil.ToFloat64(h.metrics.PossibleDuplicates); v != 1 {
		t.Fatalf("possible duplicates = %v, want 1", v)
	}
}

func TestRunnerReloadTakesEffect(t *testing.T) {
	h := newHarness(t, Retry{})
	h.start()
	id := h.accept("x@dest.example", "bob@a.example")
	h.waitGone(id)
	moved := testkit.Start(t)
	snap := *h.snap
	snap.Domains = []snapshot.Domain{{Name: "a.example", InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: moved.Port}}}
	h.load(&snap)
	id = h.accept("x@dest.example", "bob@a.example")
	h.waitGone(id)
	if len(h.sender.Messages()) != 1 || len(moved.Messages()) != 1 {
		t.Fatalf("old server %d, new server %d; want one each", len(h.sender.Messages()), len(moved.Messages()))
	}
}

func TestBackoff(t *testing.T) {
	r := Retry{}.withDefaults()
	tests := map[string]struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		"the first retry waits First":          {1, 0.5, 5 * time.Minute},
		"each retry doubles":                   {3, 0.5, 20 * time.Minute},
		"the wait is capped at Max":            {10, 0.5, time.Hour},
		"jitter shortens by up to 10 percent":  {1, 0, 4*time.Minute + 30*time.Second},
		"jitter lengthens by up to 10 percent": {1, 1, 5*time.Minute + 30*time.Second},
		"a fractional factor is not truncated": {2, 0.5, 0}, // checked below with Factor 1.5
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rr := r
			want := tc.want
			if want == 0 {
				rr.Factor, want = 1.5, 7*time.Minute+30*time.Second
			}
			if got := rr.backoff(tc.attempt, tc.u); got != want {
				t.Fatalf("backoff(%d) = %v, want %v", tc.attempt, got, want)
			}
		})
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestRunnerReportsDeliveredRecipients(t *testing.T) {
	h := newHarness(t, Retry{})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	h.sender.RejectRcpt("later@a.example", testkit.Reply(451, "4.2.0", "mailbox busy"))
	h.sender.RejectRcpt("gone@a.example", testkit.Reply(550, "5.1.1", "no such user"))
	var mu sync.Mutex
	var got []string
	h.runner.opts.Delivered = func(rcpt, direction string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, rcpt+" "+direction)
	}
	h.start()
	id := h.accept("", "bob@a.example", "later@a.example", "gone@a.example", "x@dest.example")
	m := h.waitAttempt(id, 1)
	if len(dest.Messages()) != 1 || len(h.sender.Messages()) != 1 {
		t.Fatalf("%d and %d messages delivered, want 1 and 1", len(dest.Messages()), len(h.sender.Messages()))
	}
	eventually(t, "two deliveries reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	// Only recipients whose server took the message count: not the deferred one, nor
	// the refused one; and never before the outcome is in the spool.
	if want := []string{"bob@a.example inbound", "x@dest.example outbound"}; !slices.Equal(got, want) {
		t.Errorf("Delivered heard of %q, want %q", got, want)
	}
	if m.Recipients[0].Status != spool.StatusDelivered {
		t.Errorf("bob's status in the spool is %v", m.Recipients[0].Status)
	}
}
