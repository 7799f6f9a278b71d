package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/webhook"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

var testKey = []byte("s3cret-hmac-key")

// receiver is an HTTPS endpoint that records what it is sent. fail, while positive,
// answers that many requests with a 500 first.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// pool holds the receiver's certificate: the roots that verify it.
	pool *x509.CertPool

	mu       sync.Mutex
	fail     int
	failed   int
	events   []webhook.Event
	badSigns int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	rc.pool = x509.NewCertPool()
	rc.pool.AddCert(rc.srv.Certificate())
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.fail > 0 {
		rc.fail--
		rc.failed++
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	// The signature, recomputed here as a receiver would: HMAC-SHA256 of "<ts>.<body>".
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte(req.Header.Get(webhook.HeaderTimestamp) + "."))
	m.Write(body)
	if req.Header.Get(webhook.HeaderSignature) != "sha256="+hex.EncodeToString(m.Sum(nil)) {
		rc.badSigns++
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("receiver: %v", err)
	}
	rc.events = append(rc.events, ev)
}

func (rc *receiver) received() []webhook.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]webhook.Event(nil), rc.events...)
}

func (rc *receiver) setFail(n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fail = n
}

// roots returns the same pool each time, as the relay's view does until its CA bundle
// changes.
func (rc *receiver) roots() *x509.CertPool { return rc.pool }

type senderOpt func(*webhook.Options)

// startSender runs a sender on dir that sends example.com's events to rc, through the
// guard with loopback allowed, and stops it at the end of the test. It returns the stop
// function too, for a restart.
func startSender(t *testing.T, dir string, rc *receiver, opts ...senderOpt) (*webhook.Sender, *webhook.Metrics, func()) {
	t.Helper()
	m, _ := webhook.NewMetrics(nil)
	dialer := outbound.New(outbound.Options{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	o := webhook.Options{
		Dir: dir, Metrics: m, RootCAs: rc.roots, Dial: dialer.DialGuarded, Logger: slog.New(slog.DiscardHandler),
		RetryFirst: time.Millisecond, RetryMax: 5 * time.Millisecond,
		Resolve: func(domain string) (*snapshot.Webhook, []byte) {
			if domain != "example.com" {
				return nil, nil
			}
			return &snapshot.Webhook{URL: rc.srv.URL + "/events", SecretName: "hook"}, testKey
		},
	}
	for _, opt := range opts {
		opt(&o)
	}
	s, err := webhook.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return s, m, stop
}

func event(n int, eventType string) webhook.Event {
	return webhook.Event{Type: eventType, Timestamp: time.Now().UTC(), Domain: "example.com",
		QueueID: "Q" + string(rune('A'+n%26)), Recipient: "rcpt@dest.example", Attempt: n}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, what, testkit.Until(cond))
}
