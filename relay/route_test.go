package relay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// routeFixture is a relay whose first domain sends through its own smarthost, which
// asks for a login after STARTTLS, while the relay's --smarthost is another server.
type routeFixture struct {
	*fileRelay
	provider, relaySmarthost *testkit.Server
	password                 atomic.Value // what the provider accepts
	credentials              string       // the relay's --relay-secrets-dir
}

func newRouteFixture(t *testing.T, authSecret string) *routeFixture {
	t.Helper()
	a, _ := creds(t)
	rf := &routeFixture{credentials: t.TempDir()}
	rf.password.Store("provider-password-1")
	ca := testkit.NewCA(t)
	rf.provider = testkit.Start(t, testkit.WithCertificate(ca.Leaf(t, "smtp.provider.test")),
		testkit.WithAuth(func(user, pass string) error {
			if user != "shop-user" || pass != rf.password.Load().(string) {
				return errors.New("invalid credentials")
			}
			return nil
		}))
	rf.relaySmarthost = testkit.Start(t)
	s := newSnapshot(t, certEntry, a)
	host, port := splitHostPort(t, rf.provider.Addr)
	s.Domains[0].OutboundRoute = &snapshot.Endpoint{Host: host, Port: port, AuthSecret: authSecret}
	rf.writeCredentials(t, "provider-login", "shop-user", "provider-password-1")
	rf.fileRelay = startFileRelay(t, s, deliverVia(t, rf.relaySmarthost), func(c *Config) { c.SecretsDir = rf.credentials })
	waitFor(t, "readiness", rf.Ready)
	return rf
}

// writeCredentials writes a route's credentials as a mounted Secret looks.
func (rf *routeFixture) writeCredentials(t *testing.T, name, user, password string) {
	t.Helper()
	dir := filepath.Join(rf.credentials, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "username"), []byte(user+"\n"))
	writeFile(t, filepath.Join(dir, "password"), []byte(password))
}

// submit sends one message from the route's domain and returns its queue id.
func (rf *routeFixture) submit(t *testing.T, body string) string {
	t.Helper()
	a, _ := creds(t)
	cl, err := login(rf.SubmissionAddr().String(), rf.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", body)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// deferredWith waits until id's recipient is deferred with a reply containing want.
func (rf *routeFixture) deferredWith(t *testing.T, id, want string) {
	t.Helper()
	var last spool.RecipientState
	defer func() { t.Logf("recipient state: %+v", last) }()
	waitFor(t, "the recipient deferred with "+want, func() bool {
		m, err := rf.Spool().Get(id)
		if err != nil || len(m.Recipients) != 1 {
			return false
		}
		last = m.Recipients[0]
		return last.Status == spool.StatusPending && last.Attempts > 0 && strings.Contains(last.LastReply, want)
	})
	if last.Status != spool.StatusPending {
		t.Fatalf("recipient %+v", last)
	}
}

func TestOutboundRouteLogsInAfterSTARTTLS(t *testing.T) {
	rf := newRouteFixture(t, "provider-login")
	rf.submit(t, "through the domain's smarthost")
	got := rf.provider.WaitMessages(t, 1, 30*time.Second)
	if got[0].User != "shop-user" || got[0].TLS == nil {
		t.Errorf("the provider got a message from user %q, TLS %v", got[0].User, got[0].TLS != nil)
	}
	if n := len(rf.relaySmarthost.Messages()); n != 0 {
		t.Errorf("the relay's smarthost got %d messages of a domain with its own route", n)
	}

	// A wrong password defers (Postfix's smtp_sasl_auth_soft_bounce): the mail waits for
	// the fix instead of bouncing. A changed password reaches the relay without a
	// restart and opens a new session: the pooled one logged in with the old.
	rf.writeCredentials(t, "provider-login", "shop-user", "a-wrong-password")
	rf.waitPassword(t, "a-wrong-password")
	id := rf.submit(t, "refused login")
	rf.deferredWith(t, id, "454 4.7.0 invalid credentials")
	// The status Lease reports the failure, for the MailDomain's owner.
	if fs := rf.deliveryClient.LoginFailures(); len(fs) != 1 || fs[0].AuthSecret != "provider-login" || !strings.Contains(fs[0].Reason, "invalid credentials") {
		t.Errorf("login failures %+v", fs)
	}

	rf.writeCredentials(t, "provider-login", "shop-user", "provider-password-1")
	rf.waitPassword(t, "provider-password-1")
	rf.submit(t, "after the password is fixed")
	got = rf.provider.WaitMessages(t, 2, 30*time.Second)
	if !strings.Contains(string(got[1].Data), "after the password is fixed") {
		t.Errorf("the provider's second message:\n%s", got[1].Data)
	}
	// The provider has the message a moment before the relay hears its 250.
	waitFor(t, "a login that works again to leave the report", func() bool { return len(rf.deliveryClient.LoginFailures()) == 0 })
}

func (rf *routeFixture) waitPassword(t *testing.T, password string) {
	t.Helper()
	waitFor(t, "the relay to load the route's new password", func() bool {
		c, ok := rf.reload.cur.Load().RouteCredentials("provider-login")
		return ok && c.Password == password
	})
}

func TestRouteWithoutItsCredentialsWaits(t *testing.T) {
	rf := newRouteFixture(t, "not-written")
	id := rf.submit(t, "no credentials yet")
	rf.deferredWith(t, id, "not-written")
	if n := len(rf.provider.Messages()) + len(rf.relaySmarthost.Messages()); n != 0 {
		t.Errorf("%d messages went out without the route's login", n)
	}
}

// A server that offers AUTH without TLS never gets the password.
func TestRouteNeverLogsInOverPlaintext(t *testing.T) {
	a, _ := creds(t)
	var tried atomic.Int32
	plain := testkit.Start(t, testkit.WithAuth(func(string, string) error { tried.Add(1); return nil }))
	s := newSnapshot(t, certEntry, a)
	host, port := splitHostPort(t, plain.Addr)
	s.Domains[0].OutboundRoute = &snapshot.Endpoint{Host: host, Port: port, AuthSecret: "login"}
	rf := &routeFixture{credentials: t.TempDir()}
	rf.writeCredentials(t, "login", "shop-user", "never-in-clear")
	rf.fileRelay = startFileRelay(t, s, deliverVia(t, testkit.Start(t)), func(c *Config) { c.SecretsDir = rf.credentials })
	waitFor(t, "readiness", rf.Ready)

	id := rf.submit(t, "no TLS, no password")
	rf.deferredWith(t, id, "credentials are only sent over TLS")
	if tried.Load() != 0 || len(plain.Messages()) != 0 {
		t.Errorf("the plaintext server got %d logins and %d messages", tried.Load(), len(plain.Messages()))
	}
}

// Two tenants whose routes share a smarthost log in as themselves: a session logged in
// for one is never reused for the other.
func TestTenantsSharingASmarthostLogInAsThemselves(t *testing.T) {
	a, b := creds(t)
	ca := testkit.NewCA(t)
	provider := testkit.Start(t, testkit.WithCertificate(ca.Leaf(t, "smtp.provider.test")),
		testkit.WithAuth(func(user, pass string) error {
			if pass != user+"-password" {
				return errors.New("invalid credentials")
			}
			return nil
		}))
	s := newSnapshot(t, certEntry, a, b)
	host, port := splitHostPort(t, provider.Addr)
	s.Domains[0].OutboundRoute = &snapshot.Endpoint{Host: host, Port: port, AuthSecret: "login-a"}
	s.Domains[1].OutboundRoute = &snapshot.Endpoint{Host: host, Port: port, AuthSecret: "login-b"}
	rf := &routeFixture{credentials: t.TempDir()}
	rf.writeCredentials(t, "login-a", "tenant-a", "tenant-a-password")
	rf.writeCredentials(t, "login-b", "tenant-b", "tenant-b-password")
	rf.fileRelay = startFileRelay(t, s, deliverVia(t, testkit.Start(t)), func(c *Config) { c.SecretsDir = rf.credentials })
	waitFor(t, "readiness", rf.Ready)

	for i, c := range []cred{a, b, a, b} {
		cl, err := login(rf.SubmissionAddr().String(), rf.ca.Pool(), c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := send(cl, "sender@"+c.domain, "someone@elsewhere.example", c.domain); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		provider.WaitMessages(t, i+1, 30*time.Second) // one at a time, so sessions are idle and reusable
	}
	for _, m := range provider.Messages() {
		want := map[string]string{"sender@" + a.domain: "tenant-a", "sender@" + b.domain: "tenant-b"}[m.From]
		if m.User != want {
			t.Errorf("a message from %s went out logged in as %q, want %q", m.From, m.User, want)
		}
	}
}

// Inbound mail for a domain whose own server asks for a login gets there logged in.
func TestInboundDeliveryLogsIn(t *testing.T) {
	a, _ := creds(t)
	ca := testkit.NewCA(t)
	customer := testkit.Start(t, testkit.WithCertificate(ca.Leaf(t, "mail.customer.test")),
		testkit.WithAuth(func(user, pass string) error {
			if user != "relay-at-customer" || pass != "customer-password" {
				return errors.New("invalid credentials")
			}
			return nil
		}))
	s := withInboundDelivery(t, newSnapshot(t, certEntry, a), customer)
	s.Domains[0].InboundDelivery.AuthSecret = "customer-login"
	rf := &routeFixture{credentials: t.TempDir()}
	rf.writeCredentials(t, "customer-login", "relay-at-customer", "customer-password")
	rf.fileRelay = startFileRelay(t, s, deliverVia(t, testkit.Start(t)), func(c *Config) { c.SecretsDir = rf.credentials })
	waitFor(t, "readiness", rf.Ready)

	if err := sendPlain(rf.InboundAddr().String(), "news@outside.example", "sender@"+a.domain, "Subject: hi\r\n\r\nfor you\r\n"); err != nil {
		t.Fatal(err)
	}
	got := customer.WaitMessages(t, 1, 30*time.Second)
	if got[0].User != "relay-at-customer" || got[0].TLS == nil {
		t.Errorf("the domain's server got the message from user %q, TLS %v", got[0].User, got[0].TLS != nil)
	}
}
