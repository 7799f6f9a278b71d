package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postwarden/postwarden/relay/internal/spool"
)

// queueExposition is what /metrics shows of the queue gauges.
func queueExposition(active, deferred, held, rcpts, bytes int, age float64) string {
	return fmt.Sprintf(`
# HELP postwarden_relay_queue_bytes Size of the queued message bodies.
# TYPE postwarden_relay_queue_bytes gauge
postwarden_relay_queue_bytes %d
# HELP postwarden_relay_queue_messages Messages in the spool, by state: active (due or being delivered), deferred (waiting for a retry) or held (by an administrator).
# TYPE postwarden_relay_queue_messages gauge
postwarden_relay_queue_messages{state="active"} %d
postwarden_relay_queue_messages{state="deferred"} %d
postwarden_relay_queue_messages{state="held"} %d
# HELP postwarden_relay_queue_oldest_message_age_seconds Time the oldest queued message has been in the spool; 0 when empty.
# TYPE postwarden_relay_queue_oldest_message_age_seconds gauge
postwarden_relay_queue_oldest_message_age_seconds %g
# HELP postwarden_relay_queue_recipients Recipients of queued messages still without a final outcome.
# TYPE postwarden_relay_queue_recipients gauge
postwarden_relay_queue_recipients %d
`, bytes, active, deferred, held, age, rcpts)
}

func TestQueueReadsTheSpoolSummaryAtEachScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg) // all of the relay's metrics share one registry: names must not clash
	NewConfig(reg)
	NewDiscovery(reg, func() DiscoveryStats { return DiscoveryStats{} })
	sum := spool.Summary{Messages: 6, Held: 1, Deferred: 3, Recipients: 9, Bytes: 40960, OldestAge: 90*time.Minute + 500*time.Millisecond}
	NewQueue(reg, func() spool.Summary { return sum })

	names := []string{"postwarden_relay_queue_bytes", "postwarden_relay_queue_messages",
		"postwarden_relay_queue_oldest_message_age_seconds", "postwarden_relay_queue_recipients"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(queueExposition(2, 3, 1, 9, 40960, 5400.5)), names...); err != nil {
		t.Fatal(err)
	}
	sum = spool.Summary{}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(queueExposition(0, 0, 0, 0, 0, 0)), names...); err != nil {
		t.Fatalf("a second scrape did not read the summary again: %v", err)
	}
}
