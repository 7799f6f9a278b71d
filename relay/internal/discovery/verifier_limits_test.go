package discovery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestConcurrentQuestionsShareOneCallout(t *testing.T) {
	const n = 20
	srv := testkit.Start(t)
	g := newGate()
	v := newVerifier(t, Options{Now: newClock().Now, Prober: Prober{Dial: g.Dial}})
	d := domainFor("example.com", srv)
	verdicts := make(chan smtpd.Verdict, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com")
			verdicts <- got
		})
	}
	eventually(t, "every question to join the callout", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		c := v.inflight["bob@example.com"]
		return c != nil && c.joined == n-1
	})
	close(g.open)
	wg.Wait()
	close(verdicts)
	for got := range verdicts {
		if got != smtpd.VerdictAccept {
			t.Fatalf("verdict %v, want accept", got)
		}
	}
	if c, dials := v.Callouts(), g.Waiting(); c != 1 || dials != 1 || srv.Connections() != 1 {
		t.Fatalf("%d callouts, %d dials, %d connections; want 1 each", c, dials, srv.Connections())
	}
	if st := v.Stats(); st.Coalesced != n-1 || st.Accepted != 1 {
		t.Fatalf("stats %+v, want %d coalesced and 1 accepted", st, n-1)
	}
}

func TestRateAndConcurrencyLimitsDefer(t *testing.T) {
	srv := testkit.Start(t)
	clk := newClock()
	v := newVerifier(t, Options{Now: clk.Now, Rate: 1, Burst: 2})
	d := domainFor("example.com", srv)
	verdict := func(addr string) smtpd.Verdict {
		got, _ := v.VerifyRecipient(context.Background(), d, addr)
		return got
	}
	if verdict("a@example.com") != smtpd.VerdictAccept || verdict("b@example.com") != smtpd.VerdictAccept {
		t.Fatal("the burst was not honoured")
	}
	if got := verdict("c@example.com"); got != smtpd.VerdictDefer {
		t.Fatalf("third callout in the same instant: %v, want defer", got)
	}
	if n := srv.Connections(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
	if st := v.Stats(); st.Limited != 1 {
		t.Fatalf("stats %+v, want 1 limited", st)
	}
	clk.Advance(time.Second)
	if got := verdict("c@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("after a token refilled: %v, want accept", got)
	}

	// One callout at a time to a destination: a second address is deferred at once
	// while the first callout hangs.
	g := newGate()
	v2 := newVerifier(t, Options{Now: clk.Now, MaxPerDest: 1, Prober: Prober{Dial: g.Dial}})
	first := make(chan smtpd.Verdict, 1)
	go func() {
		got, _ := v2.VerifyRecipient(context.Background(), d, "x@example.com")
		first <- got
	}()
	eventually(t, "the first callout to dial", func() bool { return g.Waiting() == 1 })
	if got, _ := v2.VerifyRecipient(context.Background(), d, "y@example.com"); got != smtpd.VerdictDefer {
		t.Fatalf("second concurrent callout: %v, want defer", got)
	}
	close(g.open)
	if got := <-first; got != smtpd.VerdictAccept {
		t.Fatalf("first callout: %v, want accept", got)
	}
}

func TestCallerGivingUpDefersButCalloutFinishes(t *testing.T) {
	srv := testkit.Start(t)
	g := newGate()
	v := newVerifier(t, Options{Now: newClock().Now, Prober: Prober{Dial: g.Dial}})
	d := domainFor("example.com", srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan smtpd.Verdict, 1)
	go func() {
		got, _ := v.VerifyRecipient(ctx, d, "bob@example.com")
		done <- got
	}()
	eventually(t, "the callout to dial", func() bool { return g.Waiting() == 1 })
	cancel()
	if got := <-done; got != smtpd.VerdictDefer {
		t.Fatalf("verdict %v for a caller that gave up, want defer", got)
	}
	close(g.open)
	eventually(t, "the callout's answer to be cached", func() bool {
		got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com")
		return got == smtpd.VerdictAccept
	})
	if n := v.Callouts(); n != 1 {
		t.Fatalf("%d callouts, want 1", n)
	}
}

func TestTempfailDuringRefreshKeepsTheAnswer(t *testing.T) {
	srv := testkit.Start(t)
	clk := newClock()
	v := newVerifier(t, Options{Now: clk.Now})
	d := domainFor("example.com", srv)
	ask := func() smtpd.Verdict {
		got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com")
		return got
	}
	if got := ask(); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v, want accept", got)
	}
	clk.Advance(DefaultPositiveRefresh)
	srv.RejectRcpt("bob@example.com", testkit.Reply(451, "4.3.0", "try later"))
	if got := ask(); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v while refreshing, want the cached accept", got)
	}
	eventually(t, "the refresh to end", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.callouts == 2 && len(v.inflight) == 0
	})
	for range 3 {
		if got := ask(); got != smtpd.VerdictAccept {
			t.Fatalf("verdict %v after a tempfailed refresh, want accept", got)
		}
	}
	if n := v.Callouts(); n != 2 {
		t.Fatalf("%d callouts, want 2: a tempfailed refresh waits before the next", n)
	}
	clk.Advance(DefaultTempfailTTL)
	srv.RejectRcpt("bob@example.com", testkit.Reply(550, "5.1.1", "gone"))
	_ = ask()
	eventually(t, "the next refresh", func() bool { return ask() == smtpd.VerdictUnknown })
}
