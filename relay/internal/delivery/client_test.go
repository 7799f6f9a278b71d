package delivery

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

func TestTLSModes(t *testing.T) {
	ca := testkit.NewCA(t)
	servers := map[string]func(t *testing.T) []testkit.Option{
		"no STARTTLS":     func(t *testing.T) []testkit.Option { return nil },
		"handshake fails": func(t *testing.T) []testkit.Option { return []testkit.Option{testkit.WithHandshakeFailure()} },
		"self-signed": func(t *testing.T) []testkit.Option {
			return []testkit.Option{testkit.WithCertificate(testkit.SelfSigned(t, "mx.dest.example"))}
		},
		"CA, MX name": func(t *testing.T) []testkit.Option {
			return []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "mx.dest.example"))}
		},
		"CA, domain name": func(t *testing.T) []testkit.Option {
			return []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "dest.example"))}
		},
		"CA, wrong name": func(t *testing.T) []testkit.Option {
			return []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "*.other.example"))}
		},
		"CA, wildcard": func(t *testing.T) []testkit.Option {
			return []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "*.dest.example"))}
		},
	}
	type want struct {
		delivered, tls, verified, fallback bool
		reason                             string // for deferrals
	}
	ok := func(tls, verified bool) want { return want{delivered: true, tls: tls, verified: verified} }
	deferred := func(reason string) want { return want{reason: reason} }
	tests := map[string]struct {
		server string
		mode   tlspolicy.Mode
		want   want
	}{
		"opportunistic sends plaintext when STARTTLS is not offered":     {"no STARTTLS", tlspolicy.Opportunistic, ok(false, false)},
		"opportunistic falls back to plaintext when the handshake fails": {"handshake fails", tlspolicy.Opportunistic, want{delivered: true, fallback: true}},
		"opportunistic accepts a self-signed certificate, unverified":    {"self-signed", tlspolicy.Opportunistic, ok(true, false)},
		"opportunistic records a verified certificate":                   {"CA, MX name", tlspolicy.Opportunistic, ok(true, true)},
		"opportunistic accepts a wrong name, unverified":                 {"CA, wrong name", tlspolicy.Opportunistic, ok(true, false)},
		"require-tls defers when STARTTLS is not offered":                {"no STARTTLS", tlspolicy.RequireTLS, deferred("does not offer STARTTLS")},
		"require-tls defers when the handshake fails, never plaintext":   {"handshake fails", tlspolicy.RequireTLS, deferred("TLS with mx.dest.example failed")},
		"require-tls accepts a self-signed certificate":                  {"self-signed", tlspolicy.RequireTLS, ok(true, false)},
		"require-tls accepts a wrong name":                               {"CA, wrong name", tlspolicy.RequireTLS, ok(true, false)},
		"require-verified defers when STARTTLS is not offered":           {"no STARTTLS", tlspolicy.RequireVerifiedTLS, deferred("does not offer STARTTLS")},
		"require-verified defers when the handshake fails":               {"handshake fails", tlspolicy.RequireVerifiedTLS, deferred("TLS with mx.dest.example failed")},
		"require-verified refuses a self-signed certificate":             {"self-signed", tlspolicy.RequireVerifiedTLS, deferred("certificate not trusted")},
		"require-verified refuses a wrong name and says which":           {"CA, wrong name", tlspolicy.RequireVerifiedTLS, deferred("certificate name mismatch: got *.other.example")},
		"require-verified accepts the MX host name":                      {"CA, MX name", tlspolicy.RequireVerifiedTLS, ok(true, true)},
		"require-verified accepts the recipient domain as the name":      {"CA, domain name", tlspolicy.RequireVerifiedTLS, ok(true, true)},
		"require-verified accepts a wildcard for the MX host":            {"CA, wildcard", tlspolicy.RequireVerifiedTLS, ok(true, true)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			srv := w.mx("dest.example", "mx.dest.example", 10, servers[tc.server](t)...)
			c := w.client()
			res := deliver(t, c, "dest.example", tlspolicy.Policy{Mode: tc.mode, Roots: ca.Pool()}, "b@dest.example")
			r := res.Recipients[0]
			if !tc.want.delivered {
				if r.Outcome != Deferred || r.Status != "4.7.10" || !strings.Contains(r.Reason, tc.want.reason) {
					t.Fatalf("got %s %s %q, want deferred 4.7.10 with %q", r.Outcome, r.Status, r.Reason, tc.want.reason)
				}
				if n := len(srv.Messages()); n != 0 {
					t.Fatalf("the server received %d messages", n)
				}
				return
			}
			if r.Outcome != Delivered {
				t.Fatalf("got %s %s %q", r.Outcome, r.Status, r.Text())
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("the server received %d messages", len(msgs))
			}
			if gotTLS := msgs[0].TLS != nil; gotTLS != tc.want.tls || (res.TLS.Version != 0) != tc.want.tls {
				t.Fatalf("server saw TLS %v, result version %x; want TLS %v", gotTLS, res.TLS.Version, tc.want.tls)
			}
			if res.TLS.Verified != tc.want.verified || res.TLS.PlaintextFallback != tc.want.fallback {
				t.Fatalf("verified %v (%s), fallback %v; want %v, %v", res.TLS.Verified, res.TLS.VerifyError,
					res.TLS.PlaintextFallback, tc.want.verified, tc.want.fallback)
			}
		})
	}
}

func TestMinVersion(t *testing.T) {
	ca := testkit.NewCA(t)
	w := newWorld(t)
	srv := w.mx("dest.example", "mx.dest.example", 10, testkit.WithCertificate(ca.Leaf(t, "mx.dest.example")))
	res := deliver(t, w.client(), "dest.example", tlspolicy.Policy{Mode: tlspolicy.RequireTLS, MinVersion: tls.VersionTLS13}, "b@dest.example")
	if res.Recipients[0].Outcome != Delivered || res.TLS.Version != tls.VersionTLS13 || len(srv.Messages()) != 1 {
		t.Fatalf("got %s over %s", res.Recipients[0].Outcome, res.TLS.VersionName())
	}
}

func TestMXFallback(t *testing.T) {
	tests := map[string]struct {
		setup   func(w *world) (first, second *testkit.Server)
		wantVia string
	}{
		"a 421 greeting from the best MX sends mail to the next": {
			setup: func(w *world) (*testkit.Server, *testkit.Server) {
				a := w.mx("dest.example", "mx1.dest.example", 10)
				a.Inject(testkit.StageConnect, testkit.Reply(421, "4.3.2", "shutting down"), -1)
				return a, w.mx("dest.example", "mx2.dest.example", 20)
			},
			wantVia: "mx2.dest.example",
		},
		"a 554 greeting from the best MX sends mail to the next": {
			setup: func(w *world) (*testkit.Server, *testkit.Server) {
				a := w.mx("dest.example", "mx1.dest.example", 10)
				a.Inject(testkit.StageConnect, testkit.Reply(554, "5.3.2", "not accepting"), -1)
				return a, w.mx("dest.example", "mx2.dest.example", 20)
			},
			wantVia: "mx2.dest.example",
		},
		"a refused connection sends mail to the next MX": {
			setup: func(w *world) (*testkit.Server, *testkit.Server) {
				w.dns.Add(w.t, "dest.example. MX 5 dead.dest.example.", "dead.dest.example. A 127.0.0.1")
				w.ports["dead.dest.example"] = 1 // nothing listens on port 1
				return nil, w.mx("dest.example", "mx2.dest.example", 20)
			},
			wantVia: "mx2.dest.example",
		},
		"an MX without an address is skipped": {
			setup: func(w *world) (*testkit.Server, *testkit.Server) {
				w.dns.Add(w.t, "dest.example. MX 5 ghost.dest.example.")
				return nil, w.mx("dest.example", "mx2.dest.example", 20)
			},
			wantVia: "mx2.dest.example",
		},
		"the best MX is used when it works": {
			setup: func(w *world) (*testkit.Server, *testkit.Server) {
				return w.mx("dest.example", "mx1.dest.example", 10), w.mx("dest.example", "mx2.dest.example", 20)
			},
			wantVia: "mx1.dest.example",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			first, second := tc.setup(w)
			res := deliver(t, w.client(), "dest.example", tlspolicy.Default, "b@dest.example")
			if res.Recipients[0].Outcome != Delivered || res.RemoteMTA != tc.wantVia {
				t.Fatalf("got %s via %q (%s), want delivered via %s", res.Recipients[0].Outcome, res.RemoteMTA, res.Recipients[0].Text(), tc.wantVia)
			}
			got := len(second.Messages())
			if first != nil {
				got += len(first.Messages())
			}
			if got != 1 {
				t.Fatalf("%d copies delivered", got)
			}
		})
	}
}

func TestAllHostsFailing(t *testing.T) {
	w := newWorld(t)
	a := w.mx("dest.example", "mx1.dest.example", 10)
	a.Inject(testkit.StageConnect, testkit.Reply(554, "5.3.2", "go away"), -1)
	res := deliver(t, w.client(), "dest.example", tlspolicy.Default, "b@dest.example")
	r := res.Recipients[0]
	if r.Outcome != Deferred || r.Status != "4.3.2" || !strings.Contains(r.Reply, "go away") {
		t.Fatalf("got %s %s %q; a refusal at connect must defer with the host's reply", r.Outcome, r.Status, r.Text())
	}
}

func TestPerRecipientOutcomes(t *testing.T) {
	bothModes(t, func(t *testing.T, mode func(*ClientOptions)) {
		w := newWorld(t)
		srv := w.mx("dest.example", "mx.dest.example", 10)
		srv.RejectRcpt("gone@dest.example", testkit.Reply(550, "5.1.1", "no such user"))
		srv.RejectRcpt("full@dest.example", testkit.Reply(452, "4.2.2", "mailbox full"))
		res := deliver(t, w.client(mode), "dest.example", tlspolicy.Default, "gone@dest.example", "ok@dest.example", "full@dest.example")
		if got := outcomes(res); got != "gone@dest.example=failed,ok@dest.example=delivered,full@dest.example=deferred" {
			t.Fatalf("outcomes %s", got)
		}
		if r := res.Recipients[0]; r.Status != "5.1.1" || r.Reply != "550 5.1.1 no such user" {
			t.Fatalf("a refused recipient keeps the remote reply: %s %q", r.Status, r.Reply)
		}
		msgs := srv.Messages()
		if len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "ok@dest.example" {
			t.Fatalf("server got %+v, want one message to the accepted recipient", msgs)
		}
		if !strings.Contains(string(msgs[0].Data), "\r\n.leading dot\r\n") {
			t.Fatalf("the body did not survive dot-stuffing: %q", msgs[0].Data)
		}
	})
}

func TestTransactionReplies(t *testing.T) {
	bothModes(t, func(t *testing.T, mode func(*ClientOptions)) {
		tests := map[string]struct {
			stage  testkit.Stage
			reply  [3]any
			want   Outcome
			status string
		}{
			"a 5xx to MAIL fails every recipient":     {testkit.StageMail, [3]any{553, "5.7.1", "sender refused"}, Failed, "5.7.1"},
			"a 4xx to MAIL defers every recipient":    {testkit.StageMail, [3]any{451, "4.3.0", "later"}, Deferred, "4.3.0"},
			"a 5xx after DATA fails every recipient":  {testkit.StageData, [3]any{554, "5.6.0", "content refused"}, Failed, "5.6.0"},
			"a 4xx after DATA defers every recipient": {testkit.StageData, [3]any{452, "4.3.1", "no space"}, Deferred, "4.3.1"},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				w := newWorld(t)
				srv := w.mx("dest.example", "mx.dest.example", 10)
				srv.Inject(tc.stage, testkit.Reply(tc.reply[0].(int), tc.reply[1].(string), tc.reply[2].(string)), 1)
				res := deliver(t, w.client(mode), "dest.example", tlspolicy.Default, "a@dest.example", "b@dest.example")
				for _, r := range res.Recipients {
					if r.Outcome != tc.want || r.Status != tc.status || !strings.Contains(r.Reply, tc.reply[2].(string)) {
						t.Fatalf("%s: %s %s %q", r.Address, r.Outcome, r.Status, r.Reply)
					}
				}
				if len(srv.Messages()) != 0 {
					t.Fatal("the server kept a refused message")
				}
			})
		}
	})
}

func TestDNSOutcomes(t *testing.T) {
	w := newWorld(t)
	w.dns.Add(t, "nullmx.example. MX 0 .")
	c := w.client()
	tests := map[string]struct {
		domain string
		want   Outcome
		status string
	}{
		"a null MX fails at once with 5.1.10": {"nullmx.example", Failed, "5.1.10"},
		"a domain that does not exist fails":  {"nxdomain.example", Failed, "5.1.2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := deliver(t, c, tc.domain, tlspolicy.Default, "x@"+tc.domain).Recipients[0]
			if r.Outcome != tc.want || r.Status != tc.status {
				t.Fatalf("got %s %s %q", r.Outcome, r.Status, r.Text())
			}
		})
	}
}

func TestSessionReuse(t *testing.T) {
	bothModes(t, func(t *testing.T, mode func(*ClientOptions)) {
		ca := testkit.NewCA(t)
		w := newWorld(t)
		srv := w.mx("dest.example", "mx.dest.example", 10, testkit.WithCertificate(ca.Leaf(t, "mx.dest.example")))
		srv.RejectRcpt("gone@dest.example", testkit.Reply(550, "5.1.1", "no such user"))
		c := w.client(mode)
		p := tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: ca.Pool()}
		// An abandoned transaction (every recipient refused) is reset, not dropped.
		for _, rcpts := range [][]string{{"a@dest.example"}, {"gone@dest.example"}, {"b@dest.example"}, {"c@dest.example"}} {
			res := deliver(t, c, "dest.example", p, rcpts...)
			if !res.TLS.Verified {
				t.Fatalf("a reused session lost its TLS facts: %+v", res.TLS)
			}
		}
		if n := len(srv.Messages()); n != 3 {
			t.Fatalf("%d messages delivered, want 3", n)
		}
		if n := srv.Connections(); n != 1 {
			t.Fatalf("%d connections for four deliveries, want 1", n)
		}
		// Another policy must not share the verified session.
		deliver(t, c, "dest.example", tlspolicy.Default, "d@dest.example")
		if n := srv.Connections(); n != 2 {
			t.Fatalf("%d connections after a delivery under another policy, want 2", n)
		}
	})
}

func TestStaleSessionIsReplaced(t *testing.T) {
	bothModes(t, func(t *testing.T, mode func(*ClientOptions)) {
		w := newWorld(t)
		srv := w.mx("dest.example", "mx.dest.example", 10)
		c := w.client(mode, func(o *ClientOptions) { o.IdleTimeout = time.Hour })
		deliver(t, c, "dest.example", tlspolicy.Default, "a@dest.example")
		// Kill the pooled session's connection from our side, as a server timeout would.
		c.mu.Lock()
		for _, ss := range c.idle {
			for _, s := range ss {
				s.close()
			}
		}
		c.mu.Unlock()
		r := deliver(t, c, "dest.example", tlspolicy.Default, "b@dest.example").Recipients[0]
		if r.Outcome != Delivered || len(srv.Messages()) != 2 {
			t.Fatalf("after a stale session: %s %q, %d messages", r.Outcome, r.Text(), len(srv.Messages()))
		}
	})
}

func TestA421OnAPooledSessionOpensANewOne(t *testing.T) {
	bothModes(t, func(t *testing.T, mode func(*ClientOptions)) {
		w := newWorld(t)
		srv := w.mx("dest.example", "mx.dest.example", 10)
		c := w.client(mode)
		deliver(t, c, "dest.example", tlspolicy.Default, "a@dest.example")
		srv.Inject(testkit.StageMail, testkit.Reply(421, "4.4.2", "idle timeout"), 1)
		r := deliver(t, c, "dest.example", tlspolicy.Default, "b@dest.example").Recipients[0]
		if r.Outcome != Delivered || srv.Connections() != 2 || len(srv.Messages()) != 2 {
			t.Fatalf("got %s %q over %d connections", r.Outcome, r.Text(), srv.Connections())
		}
	})
}

func TestInternationalAddressNeedsSMTPUTF8(t *testing.T) {
	w := newWorld(t)
	srv := w.mx("dest.example", "mx.dest.example", 10) // go-smtp does not offer SMTPUTF8 by default
	r := deliver(t, w.client(), "dest.example", tlspolicy.Default, "jörg@dest.example").Recipients[0]
	if r.Outcome != Failed || r.Status != "5.6.7" || len(srv.Messages()) != 0 {
		t.Fatalf("got %s %s %q", r.Outcome, r.Status, r.Text())
	}
}

// bothModes runs f for both ways a transaction goes out: pipelined (RFC 2920, the
// servers here all offer it) and one command at a time, for servers that do not.
func bothModes(t *testing.T, f func(t *testing.T, mode func(*ClientOptions))) {
	t.Run("pipelined", func(t *testing.T) { f(t, func(*ClientOptions) {}) })
	t.Run("one command at a time", func(t *testing.T) { f(t, func(o *ClientOptions) { o.noPipelining = true }) })
}
