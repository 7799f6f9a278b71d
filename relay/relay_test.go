package relay

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestStandaloneRelayAcceptsSubmission(t *testing.T) {
	a, _ := creds(t)
	s := newSnapshot(t, certEntry, a)
	f := startFileRelay(t, s)
	waitFor(t, "readiness", func() bool { return readyz(t, f.Relay) == http.StatusOK })
	if f.Hash() != s.Hash {
		t.Fatalf("relay enforces %s, want %s", f.Hash(), s.Hash)
	}
	id, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Spool().Get(id)
	if err != nil {
		t.Fatalf("queued message %s is not in the spool: %v", id, err)
	}
	if m.Envelope.AuthUser != a.user || m.Envelope.Sender != "sender@"+a.domain {
		t.Errorf("spooled envelope %+v", m.Envelope)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get("http://" + f.HTTPAddr().String() + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
}

// Old connections keep the config they started with; new ones see the new one; and
// no session breaks while configs are swapped under traffic.
func TestReloadUnderTraffic(t *testing.T) {
	a, b := creds(t)
	v1 := newSnapshot(t, certEntry, a)
	// The senders below open connections as fast as they can from one address: lift the
	// per-address connection rate, which would otherwise refuse most of them.
	f := startFileRelay(t, v1, func(c *Config) { c.Limits.MaxConnectionRatePerIP = 1 << 20 })
	waitFor(t, "readiness", func() bool { return f.Ready() })
	addr, roots := f.SubmissionAddr().String(), f.ca.Pool()

	old, err := login(addr, roots, a)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// Senders that keep submitting as alice, who is in every config below: two open a
	// new connection per message, two keep one session across every reload.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent int
	var failures []error
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		sent++
		if err != nil {
			failures = append(failures, err)
		}
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for range 2 {
		wg.Go(func() {
			for !stopped() {
				_, err := submit(addr, roots, a)
				record(err)
			}
		})
		wg.Go(func() {
			cl, err := login(addr, roots, a)
			if err != nil {
				record(err)
				return
			}
			defer cl.Close()
			for !stopped() {
				_, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", "long session")
				record(err)
				if err != nil {
					return
				}
			}
			record(cl.Quit())
		})
	}
	// Swap between configs with and without bob while the senders run.
	withBob := newSnapshot(t, certEntry, a, b)
	for i := range 6 {
		next := v1
		if i%2 == 0 {
			next = withBob
		}
		writeConfig(t, f.config, next)
		waitFor(t, "the relay to apply "+next.Hash[:8], func() bool { return f.Hash() == next.Hash })
	}

	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d submissions failed during reloads; first: %v", len(failures), sent, failures[0])
	}
	if sent == 0 {
		t.Fatal("no submission ran during the reloads")
	}

	// v2 drops alice: the connection that logged in under v1 is refused at its next
	// MAIL FROM (a revoked login does not outlive the reload), a new connection may not
	// log in as alice, and bob may.
	v2 := newSnapshot(t, certEntry, b)
	writeConfig(t, f.config, v2)
	waitFor(t, "the relay to apply v2", func() bool { return f.Hash() == v2.Hash })
	if _, err := send(old, "sender@"+a.domain, "someone@elsewhere.example", "pinned"); smtpCode(err) != 421 {
		t.Errorf("the connection logged in as a removed credential before the reload: %v, want 421", err)
	}
	if _, err := login(addr, roots, a); smtpCode(err) != 535 {
		t.Errorf("a new connection logged in as a removed credential: %v", err)
	}
	if _, err := submit(addr, roots, b); err != nil {
		t.Errorf("a new connection does not see the new credential: %v", err)
	}
}

func TestInvalidConfigKeepsLastGood(t *testing.T) {
	a, _ := creds(t)
	good := newSnapshot(t, certEntry, a)
	f := startFileRelay(t, good)
	waitFor(t, "readiness", func() bool { return f.Ready() })
	failures := f.cfgm.Reloads.WithLabelValues("failure")
	before := testutil.ToFloat64(failures)

	// An address in a domain it does not belong to: the snapshot validation refuses it.
	bad := newSnapshot(t, certEntry, a)
	bad.Domains[0].Users = append(bad.Domains[0].Users, snapshot.User{Address: "x@other.example"})
	bad.Hash = ""
	data, err := badJSON(bad)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.config, data)
	waitFor(t, "the refusal to be counted", func() bool { return testutil.ToFloat64(failures) > before })
	if f.Hash() != good.Hash {
		t.Fatalf("relay enforces %s after a bad config, want the last good %s", f.Hash(), good.Hash)
	}
	if !strings.Contains(f.logs.String(), "config refused") {
		t.Error("the refusal was not logged")
	}
	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Fatalf("the last good config no longer works: %v", err)
	}

	// A certificate that does not match its key is refused the same way.
	successes := f.cfgm.Reloads.WithLabelValues("success")
	applied := testutil.ToFloat64(successes)
	writeConfig(t, f.config, good)
	waitFor(t, "the good config to be applied again", func() bool { return testutil.ToFloat64(successes) > applied })
	before = testutil.ToFloat64(failures)
	other := tlscerttest.Issue(t, f.ca, relayName)
	if err := os.WriteFile(filepath.Join(f.dir, "relay.key"), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bad certificate to be refused", func() bool { return testutil.ToFloat64(failures) > before })
	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Fatalf("the last good certificate no longer works: %v", err)
	}
}

// badJSON encodes s without validating it, as a broken tool might.
func badJSON(s *snapshot.Snapshot) ([]byte, error) {
	s.Hash = ""
	return jsonMarshal(s)
}

func TestCertificateFileRotationReachesNewClients(t *testing.T) {
	a, _ := creds(t)
	f := startFileRelay(t, newSnapshot(t, certEntry, a))
	waitFor(t, "readiness", func() bool { return f.Ready() })
	serial := func() string {
		cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		state, _ := cl.TLSConnectionState()
		return state.PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	renewed := tlscerttest.Issue(t, f.ca, relayName)
	tlscerttest.WriteFiles(t, f.dir, "relay", renewed)
	leaf, err := tlsLeaf(renewed.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := leaf.SerialNumber.String()
	waitFor(t, "a new client to see the renewed certificate", func() bool { return serial() == want })
	if first == want {
		t.Fatal("the renewed certificate has the first one's serial")
	}
}

func TestReadiness(t *testing.T) {
	a, _ := creds(t)
	// The config names a certificate that does not exist yet.
	s := newSnapshot(t, []snapshot.Certificate{{CertFile: "later.crt", KeyFile: "later.key"}}, a)
	f := startFileRelay(t, s, func(c *Config) { c.DrainDelay = 2 * time.Second })
	waitFor(t, "the config to load", func() bool { return f.Hash() == s.Hash })
	if code := readyz(t, f.Relay); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d without a certificate, want 503", code)
	}
	tlscerttest.WriteFiles(t, f.dir, "later", tlscerttest.Issue(t, f.ca, relayName))
	waitFor(t, "readiness once the certificate exists", func() bool { return readyz(t, f.Relay) == http.StatusOK })

	// At shutdown, /readyz fails while the listeners still accept.
	stopped := make(chan error, 1)
	go func() { stopped <- f.stop() }()
	waitFor(t, "/readyz to fail at shutdown", func() bool { return readyz(t, f.Relay) == http.StatusServiceUnavailable })
	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Errorf("a submission during the drain delay failed: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestConfigChecks(t *testing.T) {
	tests := map[string]func(*Config){
		"a relay needs a hostname":                  func(c *Config) { c.Hostname = "" },
		"a relay needs a config source":             func(c *Config) { c.ConfigFile = "" },
		"a relay takes only one config source":      func(c *Config) { c.KubeConfigName = "relay" },
		"a relay needs a spool":                     func(c *Config) { c.SpoolDir = "" },
		"a relay needs a listener":                  func(c *Config) { c.Submission.Addr, c.Inbound.Addr = "", "" },
		"the PROXY protocol needs trusted networks": func(c *Config) { c.Inbound.Proxy = true },
		"a certificate file needs its key":          func(c *Config) { c.TLSCertFile = "x.crt" },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Hostname: relayName, ConfigFile: "relay.json", SpoolDir: t.TempDir(),
				Submission: Listener{Addr: "127.0.0.1:0"}}
			edit(&cfg)
			if r, err := New(cfg); err == nil {
				r.closeListeners()
				_ = r.spool.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}

// TestNewReportsWhatFailed: a port in use or a spool another relay holds is an error
// that says so, and what New had opened is closed again.
func TestNewReportsWhatFailed(t *testing.T) {
	a, _ := creds(t)
	f := startFileRelay(t, newSnapshot(t, certEntry, a))
	busy := f.Relay.SubmissionAddr().String()
	for _, tc := range []struct {
		name, want string
		edit       func(*Config)
	}{
		{"port in use", "address already in use", func(c *Config) {
			c.SpoolDir = filepath.Join(t.TempDir(), "spool")
			c.Submission.Addr = busy
		}},
		{"spool locked", "spool", func(c *Config) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Hostname: relayName, Submission: Listener{Addr: "127.0.0.1:0"}, Inbound: Listener{Addr: "127.0.0.1:0"},
				ConfigFile: f.config, SpoolDir: filepath.Join(f.dir, "spool"), Logger: discard()}
			tc.edit(&cfg)
			r, err := New(cfg)
			if err == nil {
				r.closeListeners()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
