package relay

import (
	"bufio"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/testkit"
)

// queueMetrics scrapes /metrics and returns the postwarden_relay_queue_* samples, keyed
// by name and labels as exposed (`postwarden_relay_queue_messages{state="active"}`).
func queueMetrics(t testing.TB, r *Relay) map[string]float64 {
	t.Helper()
	return scrapeMetrics(t, r, "postwarden_relay_queue_")
}

// scrapeMetrics scrapes /metrics and returns the samples whose name starts with prefix,
// keyed by name and labels as exposed.
func scrapeMetrics(t testing.TB, r *Relay, prefix string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", sc.Text(), err)
		}
		got[name] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

const (
	queueActive   = `postwarden_relay_queue_messages{state="active"}`
	queueDeferred = `postwarden_relay_queue_messages{state="deferred"}`
	queueHeld     = `postwarden_relay_queue_messages{state="held"}`
	queueRcpts    = `postwarden_relay_queue_recipients`
	queueBytes    = `postwarden_relay_queue_bytes`
	queueAge      = `postwarden_relay_queue_oldest_message_age_seconds`
)

func TestQueueMetricsShowMailWaitingInTheSpool(t *testing.T) {
	a, _ := creds(t)
	f := startFileRelay(t, newSnapshot(t, certEntry, a)) // no delivery: mail stays queued
	waitFor(t, "readiness", f.Ready)
	empty := map[string]float64{queueActive: 0, queueDeferred: 0, queueHeld: 0, queueRcpts: 0, queueBytes: 0, queueAge: 0}
	if got := queueMetrics(t, f.Relay); !maps.Equal(got, empty) {
		t.Fatalf("empty spool: queue metrics = %v, want %v", got, empty)
	}

	start := time.Now()
	id, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Spool().Get(id)
	if err != nil {
		t.Fatal(err)
	}
	got := queueMetrics(t, f.Relay)
	age := got[queueAge]
	delete(got, queueAge)
	want := map[string]float64{queueActive: 1, queueDeferred: 0, queueHeld: 0, queueRcpts: 1, queueBytes: float64(m.Size)}
	if !maps.Equal(got, want) {
		t.Errorf("one message queued: queue metrics = %v, want %v", got, want)
	}
	if limit := time.Since(start).Seconds() + 1; age < 0 || age > limit {
		t.Errorf("%s = %v, want between 0 and %v", queueAge, age, limit)
	}
}

func TestQueueMetricsFollowADeliveryAttempt(t *testing.T) {
	a, _ := creds(t)
	sink := testkit.Start(t)
	release := sink.HoldData()
	defer release()
	f := startFileRelay(t, newSnapshot(t, certEntry, a), deliverVia(t, sink))
	waitFor(t, "readiness", f.Ready)
	if _, err := submit(f.SubmissionAddr().String(), f.ca.Pool(), a); err != nil {
		t.Fatal(err)
	}

	// Being delivered: its next attempt is already written, yet it is active.
	waitFor(t, "the delivery to reach DATA", func() bool { return sink.Held() == 1 })
	got := queueMetrics(t, f.Relay)
	if got[queueActive] != 1 || got[queueDeferred] != 0 || got[queueRcpts] != 1 {
		t.Errorf("during the attempt: queue metrics = %v, want 1 active, 0 deferred, 1 recipient", got)
	}

	sink.Inject(testkit.StageData, testkit.Reply(451, "4.3.0", "try again later"), 1)
	release()
	waitFor(t, "the message to be deferred", func() bool { return queueMetrics(t, f.Relay)[queueDeferred] == 1 })
	got = queueMetrics(t, f.Relay)
	if got[queueActive] != 0 || got[queueRcpts] != 1 || f.Spool().Len() != 1 {
		t.Errorf("after a 451: queue metrics = %v (spool length %d), want 0 active and 1 recipient pending",
			got, f.Spool().Len())
	}
}
