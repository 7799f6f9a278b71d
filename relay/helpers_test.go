package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

const relayName = "relay.example.org"

// A credential of the test snapshots, and its password.
type cred struct{ user, password, hash, domain string }

var (
	credOnce   sync.Once
	alice, bob cred
)

func creds(t testing.TB) (cred, cred) {
	credOnce.Do(func() {
		alice = cred{user: "alice-relay", password: "alice-password-0123456789", domain: "example.com"}
		bob = cred{user: "bob-relay", password: "bob-password-0123456789", domain: "example.net"}
		for _, c := range []*cred{&alice, &bob} {
			var err error
			if c.hash, err = snapshot.HashPassword(c.password); err != nil {
				panic(err)
			}
		}
	})
	return alice, bob
}

// newSnapshot returns a snapshot with a domain and a credential for each of users,
// serving certs.
func newSnapshot(t testing.TB, certs []snapshot.Certificate, users ...cred) *snapshot.Snapshot {
	t.Helper()
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Certificates: certs}
	for _, c := range users {
		s.Domains = append(s.Domains, snapshot.Domain{Name: c.domain, Source: snapshot.ObjectRef{Namespace: "mail", Name: c.domain},
			Users: []snapshot.User{{Address: "sender@" + c.domain}}})
		s.Credentials = append(s.Credentials, snapshot.Credential{Username: c.user, PasswordHash: c.hash, Domain: c.domain,
			Source: snapshot.ObjectRef{Namespace: "mail", Name: c.user}})
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeConfig writes s to path by rename, as config tools do.
func writeConfig(t testing.TB, path string, s *snapshot.Snapshot) {
	t.Helper()
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, data)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// fileRelay is a relay started in-process from a config file, on loopback ports.
type fileRelay struct {
	*Relay
	dir, config string
	ca          *testkit.CA
	logs        *syncBuffer
	stop        func() error
}

// certEntry names the certificate files that startFileRelay writes.
var certEntry = []snapshot.Certificate{{CertFile: "relay.crt", KeyFile: "relay.key"}}

// startFileRelay writes s and a certificate for relayName next to it, and runs a relay
// on them until the test ends.
func startFileRelay(t *testing.T, s *snapshot.Snapshot, edit ...func(*Config)) *fileRelay {
	t.Helper()
	f := &fileRelay{dir: t.TempDir(), ca: testkit.NewCA(t), logs: &syncBuffer{}}
	f.config = filepath.Join(f.dir, "relay.json")
	tlscerttest.WriteFiles(t, f.dir, "relay", tlscerttest.Issue(t, f.ca, relayName))
	writeConfig(t, f.config, s)
	cfg := Config{
		Hostname:    relayName,
		Submission:  Listener{Addr: "127.0.0.1:0"},
		Inbound:     Listener{Addr: "127.0.0.1:0"},
		ConfigFile:  f.config,
		SpoolDir:    filepath.Join(f.dir, "spool"),
		HTTPAddr:    "127.0.0.1:0",
		GracePeriod: 30 * time.Second,
		Logger:      slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, e := range edit {
		e(&cfg)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", f.logs)
		}
	})
	f.Relay, f.stop = run(t, cfg)
	return f
}

// loopback is where the tests' SMTP servers listen. Delivery and callouts refuse it
// unless it is allowed, so run allows it unless a test sets OutboundAllowedNetworks
// (to an empty, non-nil list to see the refusals).
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// run starts a relay and stops it at the end of the test; stop stops it earlier.
func run(t *testing.T, cfg Config) (*Relay, func() error) {
	t.Helper()
	if cfg.OutboundAllowedNetworks == nil {
		cfg.OutboundAllowedNetworks = loopback
	}
	if cfg.Logger == nil {
		logs := &syncBuffer{}
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("relay log:\n%s", logs)
			}
		})
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r, stop
}

// waitFor polls cond until it holds, failing the test after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, what, testkit.Until(cond))
}

// readyz returns the status code of /readyz.
func readyz(t testing.TB, r *Relay) int {
	t.Helper()
	resp, err := http.Get("http://" + r.HTTPAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// login connects to a submission address, does EHLO, STARTTLS and AUTH PLAIN.
func login(addr string, roots *x509.CertPool, c cred) (*smtp.Client, error) {
	cl, err := smtp.DialStartTLS(addr, &tls.Config{ServerName: relayName, RootCAs: roots})
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if err := cl.Auth(sasl.NewPlainClient("", c.user, c.password)); err != nil {
		cl.Close()
		return nil, fmt.Errorf("auth: %w", err)
	}
	return cl, nil
}

// send sends one message over cl and returns the queue id from the 250 reply.
func send(cl *smtp.Client, from, to, body string) (string, error) {
	if err := cl.Mail(from, nil); err != nil {
		return "", fmt.Errorf("mail: %w", err)
	}
	if err := cl.Rcpt(to, nil); err != nil {
		return "", fmt.Errorf("rcpt: %w", err)
	}
	w, err := cl.Data()
	if err != nil {
		return "", fmt.Errorf("data: %w", err)
	}
	msg := "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: test\r\n\r\n" + body + "\r\n"
	if _, err := io.WriteString(w, msg); err != nil {
		return "", fmt.Errorf("writing message: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("end of data: %w", err)
	}
	_, id, ok := strings.Cut(resp.StatusText, "queued as ")
	if !ok {
		return "", fmt.Errorf("no queue id in %q", resp.StatusText)
	}
	return strings.TrimSpace(id), nil
}

// submit logs in as c, sends one message from c's domain and quits.
func submit(addr string, roots *x509.CertPool, c cred) (string, error) {
	cl, err := login(addr, roots, c)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	id, err := send(cl, "sender@"+c.domain, "someone@elsewhere.example", "hello")
	if err != nil {
		return "", err
	}
	return id, cl.Quit()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer = testenv.SyncBuffer

// smtpCode returns the SMTP reply code of err, or 0.
func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// tlsLeaf parses the first certificate of a PEM chain.
func tlsLeaf(chain []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(chain)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func containsBytes(data []byte, s string) bool { return strings.Contains(string(data), s) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
