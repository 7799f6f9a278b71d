package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

// DiscoveryStats is what SMTP Discovery has counted so far: the verifier's counters and
// the journal's backlog, read at each scrape.
type DiscoveryStats struct {
	// CacheHits were answered from the callout cache, Coalesced waited for a callout
	// already in flight, Limited were deferred by a rate or concurrency limit.
	CacheHits, Coalesced, Limited uint64
	// Accepted, Refused and TempFailed count finished callouts by outcome.
	Accepted, Refused, TempFailed uint64
	// CacheEntries is the callout cache's size.
	CacheEntries int
	// JournalPending is the number of observations awaiting the operator's
	// acknowledgement.
	JournalPending int
}

// Discovery are the metrics of SMTP Discovery. The verifier's counters are read from
// Stats at each scrape; the observations are counted as they are recorded.
type Discovery struct {
	// Observations counts observations recorded in the journal, by kind (Verified,
	// Refused, Delivered, OutboundSender).
	Observations *prometheus.CounterVec
	// RecordErrors counts observations that could not be recorded (the journal is full
	// or the disk failed).
	RecordErrors prometheus.Counter

	stats                                       func() DiscoveryStats
	callouts, hits, coalesced, limited, entries *prometheus.Desc
	pending                                     *prometheus.Desc
}

// NewDiscovery creates the discovery metrics, reading stats at each scrape, and
// registers them with reg (nil: not registered, for tests).
func NewDiscovery(reg prometheus.Registerer, stats func() DiscoveryStats) *Discovery {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "discovery", name), help, labels, nil)
	}
	m := &Discovery{
		Observations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "discovery", Name: "observations_total",
			Help: "SMTP Discovery observations recorded in the journal, by kind.",
		}, []string{"kind"}),
		RecordErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "discovery", Name: "record_errors_total",
			Help: "SMTP Discovery observations that could not be recorded (journal full or disk error).",
		}),
		stats:     stats,
		callouts:  desc("callouts_total", "Verification callouts finished, by outcome (accepted, refused, tempfailed).", "outcome"),
		hits:      desc("cache_hits_total", "Unlisted recipients answered from the callout cache."),
		coalesced: desc("coalesced_total", "Unlisted recipients that waited for a callout already in flight."),
		limited:   desc("limited_total", "Unlisted recipients deferred because a callout rate or concurrency limit was reached."),
		entries:   desc("cache_entries", "Addresses in the callout cache."),
		pending:   desc("journal_pending", "Observations in the journal awaiting the operator's acknowledgement."),
	}
	for _, k := range []discoverystate.Kind{discoverystate.Verified, discoverystate.Refused,
		discoverystate.Delivered, discoverystate.OutboundSender} {
		m.Observations.WithLabelValues(string(k))
	}
	if reg != nil {
		reg.MustRegister(m.Observations, m.RecordErrors, m)
	}
	return m
}

// Describe implements prometheus.Collector for the values read from Stats.
func (m *Discovery) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.callouts, m.hits, m.coalesced, m.limited, m.entries, m.pending} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Discovery) Collect(ch chan<- prometheus.Metric) {
	st := m.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.callouts, st.Accepted, "accepted")
	counter(m.callouts, st.Refused, "refused")
	counter(m.callouts, st.TempFailed, "tempfailed")
	counter(m.hits, st.CacheHits)
	counter(m.coalesced, st.Coalesced)
	counter(m.limited, st.Limited)
	ch <- prometheus.MustNewConstMetric(m.entries, prometheus.GaugeValue, float64(st.CacheEntries))
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(st.JournalPending))
}
