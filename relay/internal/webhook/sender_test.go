package webhook_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/webhook"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestEventsArriveInOrderAndSigned(t *testing.T) {
	rc := newReceiver(t)
	s, m, _ := startSender(t, t.TempDir(), rc)
	for i := range 20 {
		s.Enqueue(event(i, snapshot.EventDelivered))
	}
	s.Enqueue(webhook.Event{Type: snapshot.EventDelivered, Domain: "other.example"}) // no endpoint: ignored
	eventually(t, "20 events at the receiver", func() bool { return len(rc.received()) == 20 })
	for i, ev := range rc.received() {
		if ev.Attempt != i || ev.ID == "" || ev.Domain != "example.com" {
			t.Fatalf("event %d: got attempt %d id %q domain %q; want them in order, with ids", i, ev.Attempt, ev.ID, ev.Domain)
		}
	}
	if rc.badSigns != 0 {
		t.Errorf("%d events had a signature that does not verify", rc.badSigns)
	}
	// The sender counts an event once its POST's reply is in, a moment after the
	// receiver has it.
	eventually(t, "the sent metric to count 20", func() bool {
		return testutil.ToFloat64(m.Sent.WithLabelValues(snapshot.EventDelivered)) == 20
	})
	eventually(t, "the store to be empty", func() bool { return testutil.ToFloat64(m.Pending) == 0 })
}

func TestFailingEndpointIsRetriedInOrder(t *testing.T) {
	rc := newReceiver(t)
	rc.setFail(3)
	s, m, _ := startSender(t, t.TempDir(), rc)
	s.Enqueue(event(0, snapshot.EventDeferred))
	s.Enqueue(event(1, snapshot.EventBounced))
	eventually(t, "both events after three 500s", func() bool { return len(rc.received()) == 2 })
	if got := rc.received(); got[0].Attempt != 0 || got[1].Attempt != 1 {
		t.Errorf("order after retries: %d, %d", got[0].Attempt, got[1].Attempt)
	}
	if got := testutil.ToFloat64(m.Failed.WithLabelValues(snapshot.EventDeferred)); got != 3 {
		t.Errorf("failed metric = %v, want the 3 refused POSTs of the first event", got)
	}
}

func TestPendingEventsSurviveARestart(t *testing.T) {
	rc := newReceiver(t)
	rc.setFail(1 << 30)
	dir := t.TempDir()
	s, m, stop := startSender(t, dir, rc)
	for i := range 3 {
		s.Enqueue(event(i, snapshot.EventDelivered))
	}
	eventually(t, "3 events stored and a POST failed", func() bool {
		return testutil.ToFloat64(m.Pending) == 3 && testutil.ToFloat64(m.Failed.WithLabelValues(snapshot.EventDelivered)) > 0
	})
	stop()

	rc.setFail(0)
	_, m2, _ := startSender(t, dir, rc)
	// A POST cut by the stop may still have reached the receiver: delivery is at least
	// once, and receivers deduplicate by id, as this one does.
	eventually(t, "the 3 stored events sent by the new sender", func() bool { return len(distinct(rc.received())) == 3 })
	for i, ev := range distinct(rc.received()) {
		if ev.Attempt != i {
			t.Fatalf("after the restart, event %d is attempt %d; want the stored order", i, ev.Attempt)
		}
	}
	eventually(t, "the store to be empty", func() bool { return testutil.ToFloat64(m2.Pending) == 0 })
}

func TestGuardRefusesLoopbackUnlessAllowed(t *testing.T) {
	rc := newReceiver(t)
	guarded := outbound.New(outbound.Options{})
	if _, err := guarded.DialGuarded(context.Background(), "tcp", rc.srv.Listener.Addr().String()); !errors.Is(err, outbound.ErrNotPublic) {
		t.Fatalf("dialing loopback through the guard: %v, want ErrNotPublic", err)
	}
	s, m, _ := startSender(t, t.TempDir(), rc, func(o *webhook.Options) { o.Dial = guarded.DialGuarded })
	s.Enqueue(event(0, snapshot.EventDelivered))
	eventually(t, "a refused POST", func() bool { return testutil.ToFloat64(m.Failed.WithLabelValues(snapshot.EventDelivered)) >= 2 })
	if n := len(rc.received()); n != 0 {
		t.Fatalf("the receiver on loopback got %d events through the guard", n)
	}

	allowed := outbound.New(outbound.Options{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	s2, _, _ := startSender(t, t.TempDir(), rc, func(o *webhook.Options) { o.Dial = allowed.DialGuarded })
	s2.Enqueue(event(1, snapshot.EventDelivered))
	eventually(t, "the event through an allowed network", func() bool { return len(rc.received()) == 1 })
}

// The pool RootCAs returns is asked before each POST: an endpoint whose CA the pool
// lacks fails (and is retried) until a pool with it comes, without a restart.
func TestANewRootPoolIsUsedFromTheNextPost(t *testing.T) {
	rc := newReceiver(t)
	var roots atomic.Pointer[x509.CertPool]
	roots.Store(x509.NewCertPool()) // trusts nothing
	s, m, _ := startSender(t, t.TempDir(), rc, func(o *webhook.Options) { o.RootCAs = roots.Load })
	s.Enqueue(event(0, snapshot.EventDelivered))
	eventually(t, "POSTs refused for an unknown CA", func() bool {
		return testutil.ToFloat64(m.Failed.WithLabelValues(snapshot.EventDelivered)) >= 2
	})
	if n := len(rc.received()); n != 0 {
		t.Fatalf("the receiver got %d events over a connection whose certificate nothing verifies", n)
	}
	roots.Store(rc.roots())
	eventually(t, "the event once the pool has the receiver's CA", func() bool { return len(rc.received()) == 1 })
}

func TestOldEventsAreGivenUp(t *testing.T) {
	rc := newReceiver(t)
	rc.setFail(1 << 30)
	var now atomic.Int64
	now.Store(time.Now().Unix())
	s, m, _ := startSender(t, t.TempDir(), rc, func(o *webhook.Options) {
		o.GiveUp = time.Hour
		o.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	})
	s.Enqueue(event(0, snapshot.EventExpired))
	eventually(t, "a failed POST", func() bool { return testutil.ToFloat64(m.Failed.WithLabelValues(snapshot.EventExpired)) > 0 })
	now.Add(int64(2 * time.Hour / time.Second))
	eventually(t, "the event given up", func() bool {
		return testutil.ToFloat64(m.Dropped.WithLabelValues(snapshot.EventExpired, webhook.DropExpired)) == 1 &&
			testutil.ToFloat64(m.Pending) == 0
	})
}

func TestEventsWithoutKeyOrUnwantedAreNotSent(t *testing.T) {
	rc := newReceiver(t)
	s, m, _ := startSender(t, t.TempDir(), rc, func(o *webhook.Options) {
		o.Resolve = func(domain string) (*snapshot.Webhook, []byte) {
			w := &snapshot.Webhook{URL: rc.srv.URL, SecretName: "hook", Events: []string{snapshot.EventBounced}}
			if domain == "nokey.example" {
				return w, nil
			}
			return w, testKey
		}
	})
	s.Enqueue(webhook.Event{Type: snapshot.EventBounced, Domain: "nokey.example", Timestamp: time.Now()})
	s.Enqueue(webhook.Event{Type: snapshot.EventDelivered, Domain: "example.com", Timestamp: time.Now()})
	s.Enqueue(webhook.Event{Type: snapshot.EventBounced, Domain: "example.com", Timestamp: time.Now()})
	eventually(t, "the one wanted event", func() bool { return len(rc.received()) == 1 })
	if got := rc.received()[0].Type; got != snapshot.EventBounced {
		t.Errorf("sent a %s event; only bounced is wanted", got)
	}
	if got := testutil.ToFloat64(m.Dropped.WithLabelValues(snapshot.EventBounced, webhook.DropNoKey)); got != 1 {
		t.Errorf("dropped{no_key} = %v, want 1", got)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1_700_000_000, 0)
	sig := webhook.Sign(testKey, now.Unix(), body)
	tests := map[string]struct {
		key, body []byte
		sig, ts   string
		ok        bool
	}{
		"a fresh request signed with the key verifies": {testKey, body, sig, "1700000000", true},
		"another key does not":                         {[]byte("other"), body, sig, "1700000000", false},
		"a changed body does not":                      {testKey, []byte(`{"id":"y"}`), sig, "1700000000", false},
		"a timestamp out of the window does not":       {testKey, body, webhook.Sign(testKey, now.Unix()-600, body), "1699999400", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := webhook.Verify(tc.key, tc.sig, tc.ts, tc.body, now, 5*time.Minute)
			if (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// distinct keeps the first of the events with the same id.
func distinct(events []webhook.Event) []webhook.Event {
	seen := map[string]bool{}
	var out []webhook.Event
	for _, ev := range events {
		if !seen[ev.ID] {
			seen[ev.ID] = true
			out = append(out, ev)
		}
	}
	return out
}
