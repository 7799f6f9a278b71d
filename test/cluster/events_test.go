//go:build cluster

package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// eventsKey is the HMAC key of the sample domain's delivery events, in a Secret of the
// tenant's namespace.
const eventsKey = "cluster-test-events-key-0123456789"

// deliveryEvents points the sample domain's delivery events at the sink's HTTPS receiver,
// whose certificate the relays verify only through the chart's CA bundle, with an HMAC
// key from a Secret of the tenant's namespace. A message through the Service brings a
// delivered event whose signature verifies. Then, with the receiver failing its next two
// POSTs, the next message's event is retried until it arrives, the same event each
// time, and the event of a message sent after it (on the same connection, so through
// the same relay) waits behind it. The endpoint is removed at the end.
func deliveryEvents(t *testing.T, sub submitter) {
	start := time.Now()
	kube(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: events-hmac, namespace: mail}
stringData: {secret: %q}
`, eventsKey), "apply", "--server-side", "-f", "-")
	kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge", "-p",
		fmt.Sprintf(`{"spec":{"deliveryEvents":{"url":"https://%s:%d/hooks/mail","secretRef":{"name":"events-hmac"}}}}`, sinkIP, sinkEventsPort))
	t.Cleanup(func() {
		kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge", "-p", `{"spec":{"deliveryEvents":null}}`)
	})
	eventually(t, 2*time.Minute, "every relay enforces the MailDomain's endpoint and has its key", func() error {
		// The conditions of this generation, not those from before the patch.
		out := kube(t, "", "get", "maildomain", "-n", "mail", "example-com", "-o", `jsonpath={.metadata.generation}`+
			`/{.status.conditions[?(@.type=="RelaySecretsReady")].observedGeneration}={.status.conditions[?(@.type=="RelaySecretsReady")].status}`+
			`/{.status.conditions[?(@.type=="Ready")].observedGeneration}={.status.conditions[?(@.type=="Ready")].status}`)
		gen, _, _ := strings.Cut(out, "/")
		if want := fmt.Sprintf("%s/%s=True/%s=True", gen, gen, gen); out != want {
			return fmt.Errorf("generation/RelaySecretsReady/Ready: %s", out)
		}
		return nil
	})
	configured := time.Since(start)

	c, err := sub.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendOn := func(c *smtp.Client, id string) {
		t.Helper()
		if err := send(c, sub.login.sender, "someone@example.org", id); err != nil {
			t.Fatal(err)
		}
	}

	sendOn(c, "events-1@cluster.test")
	first := waitEvent(t, "events-1@cluster.test", http.StatusOK)
	ev := first.event(t)
	if ev.Type != "delivered" || ev.Domain != "example.com" || ev.Sender != sub.login.sender || ev.Recipient != "someone@example.org" ||
		ev.Direction != "outbound" || ev.ReplyCode != 250 || ev.Attempt != 1 || ev.ID == "" || ev.QueueID == "" {
		t.Errorf("the delivered event is %+v", ev)
	}
	if ct := first.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	firstTook := time.Since(start) - configured

	// Retried: the next two POSTs fail. In order: the event of events-3, sent once the
	// receiver has seen events-2's first POST, comes after events-2's accepted one.
	sinkPost(t, "/events/fail?n=2")
	sendOn(c, "events-2@cluster.test")
	waitEvent(t, "events-2@cluster.test", http.StatusServiceUnavailable)
	sendOn(c, "events-3@cluster.test")
	waitEvent(t, "events-3@cluster.test", http.StatusOK)

	hooks := sinkEvents(t)
	second, third := hooks.of(t, "events-2@cluster.test"), hooks.of(t, "events-3@cluster.test")
	var statuses []int
	for _, i := range second {
		statuses = append(statuses, hooks[i].Status)
		if got := hooks[i].event(t); got.ID != hooks[second[0]].event(t).ID || got.Type != "delivered" {
			t.Errorf("a retried POST carries event %s %s, not the first POST's %s", got.Type, got.ID, hooks[second[0]].event(t).ID)
		}
	}
	if !slices.Equal(statuses, []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusOK}) {
		t.Errorf("events-2's event was answered %v, want 503, 503 then 200: retried until accepted, not again", statuses)
	}
	if len(third) == 0 || third[0] < second[len(second)-1] {
		t.Errorf("events-3's event (requests %v) overtook events-2's (requests %v)", third, second)
	}
	t.Logf("delivery events: endpoint enforced %s after the patch; first event %s after it; the retried events took %s",
		configured.Round(time.Millisecond), firstTook.Round(time.Millisecond), (time.Since(start) - configured - firstTook).Round(time.Millisecond))
}

// sinkHook is one POST the sink's delivery events receiver got.
type sinkHook struct {
	Received time.Time   `json:"received"`
	Path     string      `json:"path"`
	Header   http.Header `json:"header"`
	Body     []byte      `json:"body"`
	Status   int         `json:"status"`
}

// deliveryEvent is the part of an event's JSON body that the test checks
// (docs/operating.md, "Delivery events").
type deliveryEvent struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Domain    string `json:"domain"`
	QueueID   string `json:"queue_id"`
	MessageID string `json:"message_id"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Direction string `json:"direction"`
	Attempt   int    `json:"attempt"`
	ReplyCode int    `json:"reply_code"`
}

// event verifies h's signature and decodes its body.
func (h sinkHook) event(t testing.TB) deliveryEvent {
	t.Helper()
	if err := verifyEvent([]byte(eventsKey), h.Header, h.Body, time.Now()); err != nil {
		t.Errorf("POST to %s received %s: %v", h.Path, h.Received.Format(time.RFC3339Nano), err)
	}
	var ev deliveryEvent
	if err := json.Unmarshal(h.Body, &ev); err != nil {
		t.Fatalf("event body %q: %v", h.Body, err)
	}
	return ev
}

// verifyEvent checks a POST as docs/operating.md tells receivers to: the HMAC-SHA256,
// keyed by key, of "<X-Postwarden-Timestamp>.<body>", compared in constant time, and a
// timestamp within 5 minutes of now. The relay's own webhook.Verify is in an internal
// package that this test, like any receiver, cannot import; doing it from the
// documentation checks the documentation too.
func verifyEvent(key []byte, header http.Header, body []byte, now time.Time) error {
	ts := header.Get("X-Postwarden-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("bad X-Postwarden-Timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("X-Postwarden-Timestamp is %s from now", d)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts + "."))
	m.Write(body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(header.Get("X-Postwarden-Signature")), []byte(want)) {
		return errors.New("X-Postwarden-Signature does not verify with the domain's key")
	}
	return nil
}

type sinkHooks []sinkHook

// of returns the indexes of the POSTs of the events of the message with this Message-ID.
func (hs sinkHooks) of(t testing.TB, id string) []int {
	t.Helper()
	var out []int
	for i, h := range hs {
		var ev deliveryEvent
		if err := json.Unmarshal(h.Body, &ev); err != nil {
			t.Fatalf("event body %q: %v", h.Body, err)
		}
		if strings.Trim(ev.MessageID, "<>") == id {
			out = append(out, i)
		}
	}
	return out
}

// waitEvent waits for a POST of the event of the message with this Message-ID that the
// receiver answered with status, and returns it.
func waitEvent(t testing.TB, id string, status int) sinkHook {
	t.Helper()
	var found sinkHook
	eventually(t, time.Minute, fmt.Sprintf("an event of %s answered %d", id, status), func() error {
		hooks := sinkEvents(t)
		for _, i := range hooks.of(t, id) {
			if hooks[i].Status == status {
				found = hooks[i]
				return nil
			}
		}
		return errors.New("none yet")
	})
	return found
}

// sinkEvents reads every POST the sink's delivery events receiver got, oldest first.
func sinkEvents(t testing.TB) sinkHooks {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/events", nodeIP, sinkHTTPPort))
	if err != nil {
		t.Fatalf("reading the sink's delivery events: %v", err)
	}
	defer resp.Body.Close()
	var hooks sinkHooks
	if err := json.NewDecoder(resp.Body).Decode(&hooks); err != nil {
		t.Fatal(err)
	}
	return hooks
}

// sinkPost POSTs to the sink's HTTP API.
func sinkPost(t testing.TB, path string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://%s:%d%s", nodeIP, sinkHTTPPort, path), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s to the sink: %s", path, resp.Status)
	}
}
