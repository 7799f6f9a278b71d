package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/test/testkit"
)

func probeFor(domain string) string { return ProbeLocalPrefix + "fixed@" + domain }

func TestCatchAllServerTeachesNothing(t *testing.T) {
	srv := testkit.Start(t) // accepts any recipient
	rec := &recorder{}
	clk := newClock()
	v := newVerifier(t, Options{Recorder: rec, Now: clk.Now, CatchAllTTL: time.Hour, ProbeAddress: probeFor})
	d := domainFor("example.com", srv)
	for _, addr := range []string{"bob@example.com", "guess1@example.com", "guess2@example.com"} {
		got, err := v.VerifyRecipient(context.Background(), d, addr)
		if err != nil || got != smtpd.VerdictAccept {
			t.Fatalf("%s: verdict %v, %v; want accept (the server takes the mail anyway)", addr, got, err)
		}
	}
	obs := rec.observations()
	if len(obs) != 1 || obs[0].Kind != discoverystate.CatchAll || obs[0].Address != probeFor("example.com") {
		t.Fatalf("recorded %+v, want only one CatchAll for the probe address", obs)
	}
	// Three callouts and one probe: the check holds for the TTL.
	if n := srv.Connections(); n != 4 {
		t.Errorf("server saw %d connections, want 4 (3 callouts, 1 probe)", n)
	}
	if st := v.Stats(); st.CatchAll != 1 {
		t.Errorf("Stats.CatchAll = %d, want 1", st.CatchAll)
	}

	// After the TTL the domain is probed again, with the next accepted callout.
	clk.Advance(time.Hour + time.Second)
	if _, err := v.VerifyRecipient(context.Background(), d, "guess3@example.com"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Connections(); n != 6 {
		t.Errorf("server saw %d connections after the TTL, want 6 (one more callout and probe)", n)
	}
}

func TestServerThatKnowsItsMailboxesIsLearnedFrom(t *testing.T) {
	srv := testkit.Start(t)
	srv.RejectRcpt(probeFor("example.com"), testkit.Reply(550, "5.1.1", "no such user"))
	rec := &recorder{}
	v := newVerifier(t, Options{Recorder: rec, Now: newClock().Now, CatchAllTTL: time.Hour, ProbeAddress: probeFor})
	d := domainFor("example.com", srv)
	for _, addr := range []string{"bob@example.com", "carol@example.com"} {
		if got, err := v.VerifyRecipient(context.Background(), d, addr); err != nil || got != smtpd.VerdictAccept {
			t.Fatalf("%s: verdict %v, %v; want accept", addr, got, err)
		}
	}
	obs := rec.observations()
	if len(obs) != 2 || obs[0].Kind != discoverystate.Verified || obs[1].Kind != discoverystate.Verified {
		t.Fatalf("recorded %+v, want two Verified", obs)
	}
	if n := srv.Connections(); n != 3 {
		t.Errorf("server saw %d connections, want 3 (2 callouts, 1 probe)", n)
	}
}

func TestUnansweredProbeIsAskedAgain(t *testing.T) {
	srv := testkit.Start(t)
	srv.RejectRcpt(probeFor("example.com"), testkit.Reply(451, "4.3.0", "try later"))
	rec := &recorder{}
	v := newVerifier(t, Options{Recorder: rec, Now: newClock().Now, CatchAllTTL: time.Hour, ProbeAddress: probeFor})
	d := domainFor("example.com", srv)
	for _, addr := range []string{"bob@example.com", "carol@example.com"} {
		if _, err := v.VerifyRecipient(context.Background(), d, addr); err != nil {
			t.Fatal(err)
		}
	}
	// A probe without an answer decides nothing: the callouts are recorded, and the
	// next accepted callout probes again.
	if obs := rec.observations(); len(obs) != 2 {
		t.Fatalf("recorded %+v, want the two callouts", obs)
	}
	if n := srv.Connections(); n != 4 {
		t.Errorf("server saw %d connections, want 4 (2 callouts, 2 probes)", n)
	}
}
