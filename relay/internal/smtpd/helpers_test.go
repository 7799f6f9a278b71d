package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/throttle"
	"github.com/postwarden/postwarden/relay/snapshot"
)

const testHostname = "relay.test.example"

// testPKI is a CA and a server certificate for testHostname and 127.0.0.1, made at test
// time.
type testPKI struct {
	server *tls.Config
	client *tls.Config
	caPEM  []byte
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func newPKI(t testing.TB) testPKI {
	pkiOnce.Do(func() {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "Postwarden test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		caCert, _ := x509.ParseCertificate(caDER)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		leaf := &x509.Certificate{
			SerialNumber: big.NewInt(2),
			Subject:      pkix.Name{CommonName: testHostname},
			DNSNames:     []string{testHostname, "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(caCert)
		cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
		pki = testPKI{
			server: &tls.Config{
				MinVersion: tls.VersionTLS12,
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					return &cert, nil
				},
			},
			client: &tls.Config{RootCAs: pool, ServerName: testHostname, MinVersion: tls.VersionTLS12},
			caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		}
	})
	return pki
}

// Passwords of the test credentials.
const (
	alicePassword = "alice-password-0123456789"
	bobPassword   = "bob-password-0123456789"
)

var (
	hashOnce           sync.Once
	aliceHash, bobHash string
)

// testSnapshot: example.com (users, functional, alias, invalid; inbound delivery),
// relay.example (127.0.0.1 is a sending server), locked.example (127.0.0.1 is a sending
// server but AUTH is required), outonly.example (no inbound delivery). Credentials:
// alice-relay sends as any address of example.com; bob-relay only as noreply@example.com.
func testSnapshot(t testing.TB) *snapshot.Snapshot {
	hashOnce.Do(func() {
		aliceHash, _ = snapshot.HashPassword(alicePassword)
		bobHash, _ = snapshot.HashPassword(bobPassword)
	})
	mx := &snapshot.Endpoint{Host: "mx.internal.example", Port: 25}
	s := &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Domains: []snapshot.Domain{
			{
				Name:               "example.com",
				Users:              []snapshot.User{{Address: "alice@example.com"}, {Address: "bob@example.com"}},
				FunctionalAccounts: []string{"billing@example.com", "noreply@example.com"},
				Aliases: []snapshot.Alias{{Address: "al@example.com", Target: "alice@example.com"},
					{Address: "oa@example.com", Target: "o@outonly.example"}},
				InvalidAddresses: []string{"gone@example.com"},
				InboundDelivery:  mx,
				Discovered: []snapshot.DiscoveredAddress{
					{Address: "found@example.com", State: snapshot.DiscoveredUser},
					{Address: "seen@example.com", State: snapshot.DiscoveredPending},
					{Address: "expired@example.com", State: snapshot.DiscoveredInvalid},
				},
			},
			{Name: "relay.example", Users: []snapshot.User{{Address: "app@relay.example"}},
				SendingServers: []string{"127.0.0.1/32"}, InboundDelivery: mx},
			{Name: "locked.example", SendingServers: []string{"127.0.0.0/8"}, RequireSMTPAuth: true,
				Users: []snapshot.User{{Address: "x@locked.example"}}, InboundDelivery: mx},
			{Name: "outonly.example", Users: []snapshot.User{{Address: "o@outonly.example"}}},
		},
		Credentials: []snapshot.Credential{
			{Username: "alice-relay", PasswordHash: aliceHash, Domain: "example.com"},
			{Username: "bob-relay", PasswordHash: bobHash, Domain: "example.com",
				AllowedSenders: []string{"noreply@example.com"}},
		},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

func buildDir(t testing.TB, s *snapshot.Snapshot) *directory.Directory {
	t.Helper()
	d, err := directory.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// records returns the JSON log records with msg.
func (b *syncBuffer) records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// sleeps records the delays the server asks for instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
}

func (s *sleeps) list() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// testEnv is a running Server on loopback with a real spool behind it.
type testEnv struct {
	t       testing.TB
	srv     *Server
	addr    string
	spool   *spool.Spool
	queue   Queue
	dir     atomic.Pointer[directory.Directory]
	logs    *syncBuffer
	sleeps  *sleeps
	metrics *metrics.Metrics
	tls     testPKI
}

type envOption func(*Options)

func withLimits(f func(*Limits)) envOption { return func(o *Options) { f(&o.Limits) } }

func newEnv(t testing.TB, mode Mode, opts ...envOption) *testEnv {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, spool: sp, queue: sp, logs: &syncBuffer{}, sleeps: &sleeps{}, tls: newPKI(t)}
	e.dir.Store(buildDir(t, testSnapshot(t)))
	e.metrics = metrics.New(prometheus.NewRegistry())
	o := Options{
		Mode:      mode,
		Hostname:  testHostname,
		TLSConfig: e.tls.server,
		Directory: e.dir.Load,
		Queue: queueFunc(func(ctx context.Context, env spool.Envelope, body io.Reader) (string, error) {
			return e.queue.Accept(ctx, env, body)
		}),
		Logger:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:     e.metrics,
		AuthLimiter: throttle.NewAuthLimiter(throttle.DefaultAuthLimits(), nil),
		Sleep:       e.sleeps.sleep,
	}
	for _, f := range opts {
		f(&o)
	}
	e.srv = New(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := sp.Close(); err != nil {
			t.Errorf("closing spool: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

type queueFunc func(ctx context.Context, env spool.Envelope, body io.Reader) (string, error)

func (f queueFunc) Accept(ctx context.Context, env spool.Envelope, body io.Reader) (string, error) {
	return f(ctx, env, body)
}

// message returns the queued envelope and body of id.
func (e *testEnv) message(id string) (spool.Envelope, string) {
	e.t.Helper()
	m, err := e.spool.Get(id)
	if err != nil {
		e.t.Fatalf("spool.Get(%s): %v", id, err)
	}
	f, err := e.spool.OpenBody(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	body, err := io.ReadAll(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return m.Envelope, string(body)
}

// client is the raw-protocol test client: the rungs are dial (greeting), ehlo,
// starttls, auth, then cmd for anything.
type client struct {
	t    testing.TB
	e    *testEnv
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &client{t: e.t, e: e, conn: conn, r: bufio.NewReader(conn)}
	c.expect("", "220 ")
	return c
}

// reply reads one (possibly multi-line) reply and returns its lines.
func (c *client) reply() []string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply (after %q): %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("writing %q: %v", line, err)
	}
}

// cmd sends line and returns the last line of the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	lines := c.reply()
	return lines[len(lines)-1]
}

// expect sends line (none if empty) and checks that the reply starts with prefix.
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	if line != "" {
		c.send(line)
	}
	lines := c.reply()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("%q: got %q, want %q...", line, last, prefix)
	}
	return last
}

func (c *client) ehlo() []string {
	c.t.Helper()
	c.send("EHLO client.test.example")
	lines := c.reply()
	if !strings.HasPrefix(lines[0], "250") {
		c.t.Fatalf("EHLO: %q", lines)
	}
	caps := make([]string, 0, len(lines))
	for _, l := range lines[1:] {
		caps = append(caps, l[4:])
	}
	return caps
}

func (c *client) starttls() {
	c.t.Helper()
	c.expect("STARTTLS", "220 ")
	tc := tls.Client(c.conn, c.e.tls.client)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func plain(authzid, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + pass))
}

// auth does AUTH PLAIN and checks the reply prefix.
func (c *client) auth(user, pass, want string) {
	c.t.Helper()
	c.expect("AUTH PLAIN "+plain("", user, pass), want)
}

// submission is a client that is through EHLO, STARTTLS, EHLO and AUTH as user.
func (e *testEnv) submission(user, pass string) *client {
	c := e.dial()
	c.ehlo()
	c.starttls()
	c.ehlo()
	c.auth(user, pass, "235 ")
	return c
}

// data sends DATA and the message (CRLF line endings as given) and returns the reply.
func (c *client) data(msg string) string {
	c.t.Helper()
	c.expect("DATA", "354 ")
	if _, err := io.WriteString(c.conn, msg+".\r\n"); err != nil {
		c.t.Fatal(err)
	}
	lines := c.reply()
	return lines[len(lines)-1]
}

// queueID extracts the id from "250 2.0.0 OK: queued as ID".
func queueID(t *testing.T, reply string) string {
	t.Helper()
	_, id, ok := strings.Cut(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0 ") || !ok {
		t.Fatalf("reply %q is not a queued message", reply)
	}
	return id
}

func msg(from, to, subject string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <1@client.test.example>\r\n\r\nHello.\r\n"
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readEOF checks that the server closes the connection (after any further replies).
func (c *client) readEOF() []string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var rest []string
	for {
		line, err := c.r.ReadString('\n')
		if line != "" {
			rest = append(rest, strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %q", rest)
			}
			return rest
		}
	}
}

var _ = os.Getenv
