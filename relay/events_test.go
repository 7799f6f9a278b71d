package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/webhook"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// A message submitted for a domain with delivery events reaches its smarthost, and the
// domain's endpoint receives the delivered event, signed with the key from the relay's
// secrets folder.
func TestDeliveredEventReachesTheDomainsEndpointSigned(t *testing.T) {
	key := "events-hmac-key"
	receiver := startEventReceiver(t, key)
	a, _ := creds(t)
	sink := testkit.Start(t)
	s := newSnapshot(t, certEntry, a)
	s.Domains[0].DeliveryEvents = &snapshot.Webhook{URL: receiver.url + "/hooks/mail", SecretName: "shop-events"}
	f := startFileRelay(t, s, deliverVia(t, sink), receiver.relayConfig(t, "shop-events"))
	waitFor(t, "readiness", f.Ready)

	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", "with an event")
	if err != nil {
		t.Fatal(err)
	}
	sink.WaitMessages(t, 1, 30*time.Second)
	got := receiver.wait(t, 1)
	ev := got[0]
	if ev.Type != snapshot.EventDelivered || ev.QueueID != id || ev.Domain != a.domain ||
		ev.Recipient != "someone@elsewhere.example" || ev.Sender != "sender@"+a.domain ||
		ev.Attempt != 1 || ev.ReplyCode != 250 {
		t.Errorf("event = %+v", ev)
	}
}

// A recipient of a managed domain that port 25 refuses (an unknown user) is a "refused"
// event for the domain; nothing was queued, so the event has no queue ID.
func TestRefusedRecipientIsAnEventForItsDomain(t *testing.T) {
	receiver := startEventReceiver(t, "events-hmac-key")
	a, _ := creds(t)
	s := withInboundDelivery(t, newSnapshot(t, certEntry, a), testkit.Start(t))
	s.Domains[0].DeliveryEvents = &snapshot.Webhook{URL: receiver.url, SecretName: "shop-events", Events: []string{snapshot.EventRefused}}
	f := startFileRelay(t, s, deliverVia(t, testkit.Start(t)), receiver.relayConfig(t, "shop-events"))
	waitFor(t, "readiness", f.Ready)

	err := sendPlain(f.InboundAddr().String(), "news@outside.example", "nobody@"+a.domain, "Subject: hi\r\n\r\nfor nobody\r\n")
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("an unknown user was not refused with 550: %v", err)
	}
	// Relay access denied belongs to no tenant: no event.
	if err := sendPlain(f.InboundAddr().String(), "news@outside.example", "someone@elsewhere.example", "Subject: x\r\n\r\nx\r\n"); err == nil {
		t.Fatal("the relay accepted mail for a domain it does not serve")
	}
	ev := receiver.wait(t, 1)[0]
	if ev.Type != snapshot.EventRefused || ev.Domain != a.domain || ev.Recipient != "nobody@"+a.domain ||
		ev.Sender != "news@outside.example" || ev.EnhancedCode != "5.1.1" || ev.ReplyCode != 550 || ev.QueueID != "" {
		t.Errorf("event = %+v", ev)
	}
}

// The endpoints' certificates are verified against the system roots and the CAs of
// --delivery-events-ca-file, which is followed like the config: an endpoint whose CA
// the bundle lacks is retried until a new bundle has it, and a bundle that does not
// parse is refused, the one in force kept.
func TestDeliveryEventsCABundleIsFollowed(t *testing.T) {
	receiver := startEventReceiver(t, "events-hmac-key")
	a, _ := creds(t)
	sink := testkit.Start(t)
	s := newSnapshot(t, certEntry, a)
	s.Domains[0].DeliveryEvents = &snapshot.Webhook{URL: receiver.url, SecretName: "shop-events"}
	f := startFileRelay(t, s, deliverVia(t, sink), receiver.relayConfig(t, "shop-events"), func(c *Config) {
		writeFile(t, c.Delivery.Events.CAFile, []byte(testkit.NewCA(t).PEM())) // another CA
		c.Delivery.Events.RetryFirst, c.Delivery.Events.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	})
	waitFor(t, "readiness", f.Ready)
	caFile := f.cfg.Delivery.Events.CAFile

	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a POST refused for the endpoint's unknown CA", func() bool {
		return strings.Contains(f.logs.String(), "certificate signed by unknown authority")
	})
	if n := receiver.count(); n != 0 {
		t.Fatalf("the endpoint got %d events over TLS that nothing in the bundle verifies", n)
	}
	writeFile(t, caFile, receiver.caPEM)
	receiver.wait(t, 1)

	writeFile(t, caFile, []byte("not a PEM bundle\n"))
	waitFor(t, "the bad bundle refused", func() bool {
		return strings.Contains(f.logs.String(), "delivery events CA bundle: no PEM certificate in it")
	})
	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Fatal(err)
	}
	receiver.wait(t, 2) // with the bundle in force before
}

// A bundle's CAs are added to the system roots, never in their place.
func TestEventRootsFrom(t *testing.T) {
	ca := testkit.NewCA(t)
	key := "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
	tests := map[string]struct {
		bundle string
		n      int
		err    string
	}{
		"a CA is added to the system roots":          {bundle: ca.PEM(), n: 1},
		"blocks other than certificates are skipped": {bundle: key + ca.PEM() + testkit.NewCA(t).PEM(), n: 2},
		"a bundle without a certificate is refused":  {bundle: key, err: "no PEM certificate"},
		"an empty bundle is refused":                 {bundle: "", err: "no PEM certificate"},
		"a certificate that does not parse is refused": {
			bundle: ca.PEM() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", err: "certificate 2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pool, n, err := eventRootsFrom([]byte(tc.bundle))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || n != tc.n {
				t.Fatalf("%d certificates, error %v; want %d", n, err, tc.n)
			}
			want, err := x509.SystemCertPool()
			if err != nil {
				want = x509.NewCertPool()
			}
			want.AppendCertsFromPEM([]byte(tc.bundle))
			if !pool.Equal(want) {
				t.Error("the pool is not the system roots plus the bundle")
			}
		})
	}
}

// eventReceiver is an HTTPS endpoint that checks each event's signature.
type eventReceiver struct {
	url   string
	caPEM []byte // its certificate, the CA that verifies it
	key   string
	mu    sync.Mutex
	got   []webhook.Event
	bad   bool
}

func startEventReceiver(t *testing.T, key string) *eventReceiver {
	t.Helper()
	r := &eventReceiver{key: key}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(req.Header.Get(webhook.HeaderTimestamp) + "." + string(body)))
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get(webhook.HeaderSignature) != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			r.bad = true
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("receiver: %v", err)
		}
		r.got = append(r.got, ev)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	r.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return r
}

// relayConfig writes the receiver's key as the relay secret name, and its certificate
// into the relay's delivery events CA bundle.
func (r *eventReceiver) relayConfig(t *testing.T, name string) func(*Config) {
	t.Helper()
	secrets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(secrets, name), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secrets, name, snapshot.WebhookSecretKey), []byte(r.key+"\n"))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, caFile, r.caPEM)
	return func(c *Config) {
		c.SecretsDir = secrets
		c.Delivery.Events.CAFile = caFile
	}
}

// count returns how many events arrived.
func (r *eventReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// wait returns the first n events once they arrived, all signed with the key.
func (r *eventReceiver) wait(t *testing.T, n int) []webhook.Event {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d events at the endpoint", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.got) >= n
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bad {
		t.Error("an event's signature does not verify with the domain's key")
	}
	return append([]webhook.Event(nil), r.got[:n]...)
}
