package outbound

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/tlspolicy"
	"github.com/postwarden/postwarden/test/testkit"
)

func newDialer(opts Options) *Dialer {
	opts.HELOName = "relay.test"
	if opts.AllowedNetworks == nil {
		opts.AllowedNetworks = loopback
	}
	opts.ConnectTimeout, opts.CommandTimeout = 5*time.Second, 10*time.Second
	return New(opts)
}

func endpoint(host string, port int) Endpoint {
	return Endpoint{Host: host, Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
}

func TestOpenTLS(t *testing.T) {
	ca := testkit.NewCA(t)
	verified := tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: ca.Pool()}
	tests := map[string]struct {
		server   []testkit.Option
		params   Params
		want     TLSInfo // Version is only compared as "some" or "none"
		wantErr  string
		dialings int
	}{
		"opportunistic falls back to plaintext after a failed handshake, and says so": {
			server: []testkit.Option{testkit.WithHandshakeFailure()},
			params: Params{Policy: tlspolicy.Policy{Mode: tlspolicy.Opportunistic, Source: "mail/p"}},
			want:   TLSInfo{PlaintextFallback: true}, dialings: 2,
		},
		"opportunistic reports an unverified certificate and why": {
			server: []testkit.Option{testkit.WithCertificate(testkit.SelfSigned(t, "mx.example"))},
			params: Params{Policy: tlspolicy.Default},
			want:   TLSInfo{Version: 1, VerifyError: "certificate not trusted"}, dialings: 1,
		},
		"require-tls never goes on in plaintext": {
			params:  Params{Policy: tlspolicy.Policy{Mode: tlspolicy.RequireTLS}},
			wantErr: "does not offer STARTTLS", dialings: 1,
		},
		"verified TLS checks the server name instead of the host dialed": {
			server: []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "relay.example"))},
			params: Params{Policy: verified, ServerName: "relay.example"},
			want:   TLSInfo{Version: 1, Verified: true}, dialings: 1,
		},
		"verified TLS refuses a certificate for another name": {
			server:  []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "relay.example"))},
			params:  Params{Policy: verified},
			wantErr: "certificate name mismatch", dialings: 1,
		},
		"verified TLS accepts the recipient domain's name": {
			server: []testkit.Option{testkit.WithCertificate(ca.Leaf(t, "dest.example"))},
			params: Params{Policy: verified, Domain: "dest.example"},
			want:   TLSInfo{Version: 1, Verified: true}, dialings: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			srv := testkit.Start(t, tc.server...)
			var dialings, failed int
			var fellBack []string
			d := newDialer(Options{Hooks: Hooks{
				Connected: func(err error) {
					dialings++
					if err != nil {
						failed++
					}
				},
				PlaintextFallback: func(p tlspolicy.Policy) { fellBack = append(fellBack, p.Source) },
			}})
			c, err := d.Open(context.Background(), endpoint("mx.example", srv.Port), tc.params)
			if dialings != tc.dialings || failed != 0 {
				t.Errorf("%d connections (%d failed), want %d", dialings, failed, tc.dialings)
			}
			if tc.wantErr != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Status != "4.7.10" || !strings.Contains(oe.Reason, tc.wantErr) {
					t.Fatalf("Open = %v, want 4.7.10 with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.TLS
			if got.Encrypted() != (tc.want.Version != 0) || got.Verified != tc.want.Verified ||
				got.PlaintextFallback != tc.want.PlaintextFallback || !strings.Contains(got.VerifyError, tc.want.VerifyError) {
				t.Fatalf("TLS %+v, want %+v", got, tc.want)
			}
			if tc.want.PlaintextFallback && !slices.Equal(fellBack, []string{"mail/p"}) {
				t.Errorf("fallback hook saw %q, want the policy's source", fellBack)
			}
			if err := c.Mail("a@relay.test", nil); err != nil {
				t.Fatalf("the session is not ready for MAIL FROM: %v", err)
			}
		})
	}
}

// A server that sends data unasked after its EHLO or STARTTLS reply could be an attacker
// injecting commands' replies into what is read after the handshake.
func TestUnaskedDataIsRefused(t *testing.T) {
	cert := testkit.SelfSigned(t, "mx.example")
	tests := map[string]struct {
		server  *scripted
		policy  tlspolicy.Policy
		wantErr string
		// fallback is set when an opportunistic session went on in plaintext instead.
		fallback bool
	}{
		"data after the EHLO reply ends the session": {
			server: &scripted{afterEHLO: "250 injected"}, policy: tlspolicy.Default, wantErr: "unexpected data after EHLO",
		},
		"data after the STARTTLS reply fails TLS under a required policy": {
			server: &scripted{cert: &cert, afterSTARTTLS: "250 injected"}, policy: tlspolicy.Policy{Mode: tlspolicy.RequireTLS},
			wantErr: "data after its STARTTLS reply",
		},
		"data after the STARTTLS reply is a failed handshake to opportunistic TLS": {
			server: &scripted{cert: &cert, afterSTARTTLS: "250 injected"}, policy: tlspolicy.Default, fallback: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.server.t = t
			srv := tc.server.start()
			c, err := newDialer(Options{}).Open(context.Background(), endpoint("mx.example", srv.port), Params{Policy: tc.policy})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !c.TLS.PlaintextFallback || c.TLS.Encrypted() != !tc.fallback {
				t.Fatalf("TLS %+v", c.TLS)
			}
		})
	}
}

func TestHELOFallback(t *testing.T) {
	srv := (&scripted{t: t, noEHLO: true}).start()
	c, err := newDialer(Options{}).Open(context.Background(), endpoint("old.example", srv.port), Params{Policy: tlspolicy.Default})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@relay.test", nil); err != nil {
		t.Fatal(err)
	}
	if got := srv.seen(); !slices.Contains(got, "HELO") {
		t.Fatalf("commands %q, want a HELO after the refused EHLO", got)
	}
}

func TestEndpoints(t *testing.T) {
	dns := testkit.StartDNS(t)
	dns.Add(t, "a.example. A 127.0.0.1", "a.example. A 127.0.0.2", "a.example. A 127.0.0.3",
		"b.example. A 127.0.1.1", "b.example. A 127.0.1.2")
	r, err := mx.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := newDialer(Options{Resolver: r, MaxAddresses: 4})
	var got []string
	var errs int
	for ep, err := range d.Endpoints(context.Background(), Host{Name: "a.example", Port: 2525}, Host{Name: "ghost.example"}, Host{Name: "b.example"}) {
		if err != nil {
			errs++
			continue
		}
		got = append(got, ep.Host+"="+ep.Addr.String())
	}
	want := []string{"a.example=127.0.0.1:2525", "a.example=127.0.0.2:2525", "a.example=127.0.0.3:2525", "b.example=127.0.1.1:25"}
	if !slices.Equal(got, want) || errs != 1 {
		t.Fatalf("endpoints %q and %d errors, want %q and the ghost's error: at most 4 addresses over all hosts", got, errs, want)
	}
}

func TestDialTriesTheNextAddress(t *testing.T) {
	srv := testkit.Start(t) // on 127.0.0.1 only: 127.0.0.2 refuses the connection
	dns := testkit.StartDNS(t)
	dns.Add(t, "mx.example. A 127.0.0.2", "mx.example. A 127.0.0.1")
	r, err := mx.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newDialer(Options{Resolver: r}).Dial(context.Background(), Host{Name: "mx.example", Port: srv.Port}, Params{Policy: tlspolicy.Default})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Endpoint.Addr.Addr().String(); got != "127.0.0.1" {
		t.Fatalf("connected to %s, want 127.0.0.1", got)
	}
}

func TestAuth(t *testing.T) {
	cert := testkit.SelfSigned(t, "submit.example")
	good, bad := &Credentials{Username: "user", Password: "secret"}, &Credentials{Username: "user", Password: "wrong"}
	tests := map[string]struct {
		server   *scripted
		creds    *Credentials
		wantMech string
		wantErr  error
		wantCode int
	}{
		"PLAIN over TLS":                  {server: &scripted{cert: &cert, auth: "LOGIN PLAIN"}, creds: good, wantMech: "AUTH PLAIN"},
		"LOGIN when PLAIN is not offered": {server: &scripted{cert: &cert, auth: "LOGIN"}, creds: good, wantMech: "AUTH LOGIN"},
		"a refusal keeps the reply":       {server: &scripted{cert: &cert, auth: "PLAIN"}, creds: bad, wantMech: "AUTH PLAIN", wantCode: 535},
		"never in plaintext, even when the server offers it": {
			server: &scripted{auth: "PLAIN LOGIN", authPlaintext: true}, creds: good, wantErr: ErrPlaintextAuth,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.server.t = t
			srv := tc.server.start()
			c, err := newDialer(Options{}).Open(context.Background(), endpoint("submit.example", srv.port),
				Params{Policy: tlspolicy.Default, Auth: tc.creds})
			var oe *Error
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "not encrypted") {
					t.Fatalf("Open = %v, want %v", err, tc.wantErr)
				}
			case tc.wantCode != 0:
				if !errors.As(err, &oe) || oe.Code != tc.wantCode || !strings.Contains(oe.Reason, "AUTH") {
					t.Fatalf("Open = %v, want the server's %d at AUTH", err, tc.wantCode)
				}
			case err != nil:
				t.Fatal(err)
			default:
				_ = c.Quit()
			}
			seen := srv.seen()
			var auths []string
			for _, cmd := range seen {
				if strings.HasPrefix(cmd, "AUTH") {
					auths = append(auths, cmd)
				}
			}
			if tc.wantMech == "" && len(auths) != 0 || tc.wantMech != "" && !slices.Equal(auths, []string{tc.wantMech}) {
				t.Fatalf("the server saw %q, want %q", auths, tc.wantMech)
			}
		})
	}
}
