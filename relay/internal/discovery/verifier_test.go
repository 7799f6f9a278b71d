package discovery

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestVerdicts(t *testing.T) {
	tests := map[string]struct {
		setup       func(*testkit.Server)
		want        smtpd.Verdict
		wantRecord  discoverystate.Kind // "" means nothing recorded
		connections int
	}{
		"an address the server accepts is accepted and recorded as verified": {
			setup: func(*testkit.Server) {}, want: smtpd.VerdictAccept, wantRecord: discoverystate.Verified, connections: 1,
		},
		"an address the server refuses with 550 is unknown and recorded as refused": {
			setup: func(s *testkit.Server) {
				s.RejectRcpt("bob@example.com", testkit.Reply(550, "5.1.1", "no such user"))
			},
			want: smtpd.VerdictUnknown, wantRecord: discoverystate.Refused, connections: 1,
		},
		"a 450 to RCPT defers": {
			setup: func(s *testkit.Server) {
				s.RejectRcpt("bob@example.com", testkit.Reply(450, "4.2.0", "mailbox busy"))
			},
			want: smtpd.VerdictDefer, connections: 1,
		},
		"a refused null sender defers rather than rejects": {
			setup: func(s *testkit.Server) {
				s.Inject(testkit.StageMail, testkit.Reply(550, "5.7.1", "no bounces here"), -1)
			},
			want: smtpd.VerdictDefer, connections: 1,
		},
		"a server that greets with 421 defers": {
			setup: func(s *testkit.Server) {
				s.Inject(testkit.StageConnect, testkit.Reply(421, "4.3.2", "busy"), -1)
			},
			want: smtpd.VerdictDefer, connections: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := testkit.Start(t)
			tc.setup(srv)
			rec := &recorder{}
			v := newVerifier(t, Options{Recorder: rec, Now: newClock().Now})
			got, err := v.VerifyRecipient(context.Background(), domainFor("example.com", srv), "bob@example.com")
			if err != nil || got != tc.want {
				t.Fatalf("verdict %v, %v; want %v", got, err, tc.want)
			}
			if n := srv.Connections(); n != tc.connections {
				t.Fatalf("server saw %d connections, want %d", n, tc.connections)
			}
			obs := rec.observations()
			switch {
			case tc.wantRecord == "" && len(obs) != 0:
				t.Fatalf("recorded %+v, want nothing", obs)
			case tc.wantRecord != "" && (len(obs) != 1 || obs[0].Kind != tc.wantRecord || obs[0].Address != "bob@example.com"):
				t.Fatalf("recorded %+v, want one %s for bob@example.com", obs, tc.wantRecord)
			}
			if len(srv.Messages()) != 0 {
				t.Fatal("a callout delivered a message")
			}
		})
	}
}

func TestNoCalloutWithoutPolicyOrDestination(t *testing.T) {
	// A bare listener that counts connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	ep := &snapshot.Endpoint{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
	v := newVerifier(t, Options{})
	noPolicy := &directory.Domain{Name: "example.com", InboundDelivery: ep}
	noDest := &directory.Domain{Name: "example.com", DiscoveryPolicy: "mail/discovery"}
	for _, d := range []*directory.Domain{noPolicy, noDest, nil} {
		if got, err := v.VerifyRecipient(context.Background(), d, "bob@example.com"); err != nil || got != smtpd.VerdictUnknown {
			t.Fatalf("verdict %v, %v; want unknown", got, err)
		}
	}
	_ = ln.Close()
	<-done
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections, want none", n)
	}
	if n := v.Callouts(); n != 0 {
		t.Fatalf("%d callouts, want none", n)
	}
}

func TestUnreachableServerDefers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	v := newVerifier(t, Options{})
	d := &directory.Domain{Name: "example.com", DiscoveryPolicy: "p", InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: port}}
	if got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictDefer {
		t.Fatalf("verdict %v, want defer", got)
	}
}

func TestCache(t *testing.T) {
	srv := testkit.Start(t)
	srv.RejectRcpt("nobody@example.com", testkit.Reply(550, "5.1.1", "no such user"))
	clk := newClock()
	v := newVerifier(t, Options{Now: clk.Now})
	d := domainFor("example.com", srv)
	ask := func(addr string, want smtpd.Verdict) {
		t.Helper()
		if got, err := v.VerifyRecipient(context.Background(), d, addr); err != nil || got != want {
			t.Fatalf("%s: verdict %v, %v; want %v", addr, got, err, want)
		}
	}
	for range 3 {
		ask("bob@example.com", smtpd.VerdictAccept)
		ask("nobody@example.com", smtpd.VerdictUnknown)
	}
	if n := srv.Connections(); n != 2 {
		t.Fatalf("server saw %d connections for 6 questions about 2 addresses, want 2", n)
	}
	if st := v.Stats(); st.CacheHits != 4 || st.Accepted != 1 || st.Refused != 1 || st.CacheEntries != 2 {
		t.Fatalf("stats %+v, want 4 cache hits, 1 accepted, 1 refused, 2 entries", st)
	}

	// Past the negative refresh time the cached answer is served and refreshed in the
	// background; the positive answer is still fresh.
	clk.Advance(DefaultNegativeRefresh)
	srv.RejectRcpt("nobody@example.com", nil)
	ask("nobody@example.com", smtpd.VerdictUnknown)
	ask("bob@example.com", smtpd.VerdictAccept)
	eventually(t, "the background refresh", func() bool {
		got, _ := v.VerifyRecipient(context.Background(), d, "nobody@example.com")
		return got == smtpd.VerdictAccept
	})
	if n := srv.Connections(); n != 3 {
		t.Fatalf("server saw %d connections, want 3 (one refresh)", n)
	}

	// Past the positive lifetime the answer is gone, and a fresh callout decides.
	clk.Advance(DefaultPositiveTTL)
	srv.RejectRcpt("bob@example.com", testkit.Reply(550, "5.1.1", "gone"))
	ask("bob@example.com", smtpd.VerdictUnknown)
	if n := srv.Connections(); n != 4 {
		t.Fatalf("server saw %d connections, want 4", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	srv := testkit.Start(t)
	v := newVerifier(t, Options{Now: newClock().Now, CacheSize: 3, Burst: 100})
	d := domainFor("example.com", srv)
	for i := range 5 {
		if got, _ := v.VerifyRecipient(context.Background(), d, fmt.Sprintf("u%d@example.com", i)); got != smtpd.VerdictAccept {
			t.Fatalf("u%d: verdict %v", i, got)
		}
	}
	if n := v.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	// The least recently used address was evicted and needs a new callout.
	_, _ = v.VerifyRecipient(context.Background(), d, "u0@example.com")
	if n := srv.Connections(); n != 6 {
		t.Fatalf("server saw %d connections, want 6", n)
	}
}

func TestTempfailDefersThenRecovers(t *testing.T) {
	srv := testkit.Start(t)
	srv.RejectRcpt("bob@example.com", testkit.Reply(451, "4.3.0", "try later"))
	clk := newClock()
	v := newVerifier(t, Options{Now: clk.Now})
	d := domainFor("example.com", srv)
	for range 2 {
		if got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictDefer {
			t.Fatalf("verdict %v, want defer", got)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Fatalf("server saw %d connections, want 1: a tempfail is cached briefly", n)
	}
	srv.RejectRcpt("bob@example.com", nil)
	clk.Advance(DefaultTempfailTTL)
	if got, _ := v.VerifyRecipient(context.Background(), d, "bob@example.com"); got != smtpd.VerdictAccept {
		t.Fatalf("verdict %v after the server recovered, want accept", got)
	}
}
