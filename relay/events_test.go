package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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

// eventReceiver is an HTTPS endpoint that checks each event's signature.
type eventReceiver struct {
	url   string
	roots *x509.CertPool
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
	r.roots = x509.NewCertPool()
	r.roots.AddCert(srv.Certificate())
	return r
}

// relayConfig writes the receiver's key as the relay secret name and points the relay
// at the receiver's roots.
func (r *eventReceiver) relayConfig(t *testing.T, name string) func(*Config) {
	t.Helper()
	secrets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(secrets, name), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secrets, name, snapshot.WebhookSecretKey), []byte(r.key+"\n"))
	return func(c *Config) {
		c.SecretsDir = secrets
		c.Delivery.Events.RootCAs = r.roots
	}
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
