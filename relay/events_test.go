package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	var mu sync.Mutex
	var got []webhook.Event
	var badSignature bool
	receiver := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(req.Header.Get(webhook.HeaderTimestamp) + "." + string(body)))
		mu.Lock()
		defer mu.Unlock()
		if req.Header.Get(webhook.HeaderSignature) != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			badSignature = true
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("receiver: %v", err)
		}
		got = append(got, ev)
	}))
	defer receiver.Close()
	roots := x509.NewCertPool()
	roots.AddCert(receiver.Certificate())

	a, _ := creds(t)
	sink := testkit.Start(t)
	s := newSnapshot(t, certEntry, a)
	s.Domains[0].DeliveryEvents = &snapshot.Webhook{URL: receiver.URL + "/hooks/mail", SecretName: "shop-events"}
	secrets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(secrets, "shop-events"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secrets, "shop-events", snapshot.WebhookSecretKey), []byte(key+"\n"))
	f := startFileRelay(t, s, deliverVia(t, sink), func(c *Config) {
		c.SecretsDir = secrets
		c.Delivery.Events.RootCAs = roots
	})
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
	waitFor(t, "the delivered event at the endpoint", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	ev := got[0]
	if badSignature {
		t.Error("the event's signature does not verify with the domain's key")
	}
	if ev.Type != snapshot.EventDelivered || ev.QueueID != id || ev.Domain != a.domain ||
		ev.Recipient != "someone@elsewhere.example" || ev.Sender != "sender@"+a.domain ||
		ev.Attempt != 1 || ev.ReplyCode != 250 {
		t.Errorf("event = %+v", ev)
	}
}
