package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewRegistersBesideTheConfigMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	NewConfig(reg) // both sets share one registry in the relay: names must not clash
	m.Connections.WithLabelValues("submission", "accepted").Inc()
	m.AuthFailures.WithLabelValues("bad_credentials").Add(2)
	m.Replies.WithLabelValues("554", "5.7.1").Inc()
	m.BytesReceived.Add(100)

	want := `
# HELP postwarden_relay_smtp_auth_failures_total Failed SMTP AUTH exchanges by reason.
# TYPE postwarden_relay_smtp_auth_failures_total counter
postwarden_relay_smtp_auth_failures_total{reason="bad_credentials"} 2
# HELP postwarden_relay_smtp_replies_total Replies produced by the relay's error mapper by code and enhanced code.
# TYPE postwarden_relay_smtp_replies_total counter
postwarden_relay_smtp_replies_total{code="554",enhanced="5.7.1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"postwarden_relay_smtp_auth_failures_total", "postwarden_relay_smtp_replies_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.BytesReceived); got != 100 {
		t.Errorf("bytes received = %v", got)
	}
}

func TestNewWithoutRegistererIsUsable(t *testing.T) {
	m := New(nil)
	m.MessagesRejected.WithLabelValues("relay_denied").Inc()
	if got := testutil.ToFloat64(m.MessagesRejected.WithLabelValues("relay_denied")); got != 1 {
		t.Errorf("rejected = %v", got)
	}
}

func TestDiscoveryReadsStatsAtEachScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	NewConfig(reg)
	st := DiscoveryStats{CacheHits: 7, Accepted: 3, Refused: 2, TempFailed: 1, JournalPending: 5}
	m := NewDiscovery(reg, func() DiscoveryStats { return st })
	m.Observations.WithLabelValues("Delivered").Inc()
	want := `
# HELP postwarden_relay_discovery_cache_hits_total Unlisted recipients answered from the callout cache.
# TYPE postwarden_relay_discovery_cache_hits_total counter
postwarden_relay_discovery_cache_hits_total 7
# HELP postwarden_relay_discovery_callouts_total Verification callouts finished, by outcome (accepted, refused, tempfailed).
# TYPE postwarden_relay_discovery_callouts_total counter
postwarden_relay_discovery_callouts_total{outcome="accepted"} 3
postwarden_relay_discovery_callouts_total{outcome="refused"} 2
postwarden_relay_discovery_callouts_total{outcome="tempfailed"} 1
# HELP postwarden_relay_discovery_journal_pending Observations in the journal awaiting the operator's acknowledgement.
# TYPE postwarden_relay_discovery_journal_pending gauge
postwarden_relay_discovery_journal_pending 5
`
	names := []string{"postwarden_relay_discovery_cache_hits_total", "postwarden_relay_discovery_callouts_total",
		"postwarden_relay_discovery_journal_pending"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	st.JournalPending = 0
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, "pending 5", "pending 0", 1)), names...); err != nil {
		t.Fatalf("a second scrape did not read the stats again: %v", err)
	}
	if got := testutil.ToFloat64(m.Observations.WithLabelValues("Delivered")); got != 1 {
		t.Errorf("Delivered observations = %v", got)
	}
}
