package delivery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the delivery side's collectors.
type Metrics struct {
	// Recipients counts recipient outcomes by direction ("outbound", "inbound") and
	// result: delivered, deferred (will retry), bounced (5xx or null MX) or expired.
	Recipients *prometheus.CounterVec
	// TLS counts delivery transactions by the TLS policy that applied (a
	// TLSDeliveryPolicy's namespace/name, or "default"), TLS version ("none" for
	// plaintext), cipher suite and whether the peer certificate verified. The policy,
	// not the recipient domain, labels them: policies are objects an admin made, so the
	// label set stays bounded however many domains mail goes to.
	TLS *prometheus.CounterVec
	// TLSFallbacks counts opportunistic sessions that fell back to plaintext after a
	// failed handshake, by TLS policy.
	TLSFallbacks *prometheus.CounterVec
	// Connections counts SMTP sessions by result: opened, reused, failed.
	Connections *prometheus.CounterVec
	// TransactionSeconds is the time from MAIL FROM to the reply after DATA.
	TransactionSeconds prometheus.Histogram
	// Notifications counts queued DSNs by kind ("bounce", "delay").
	Notifications *prometheus.CounterVec
	// PossibleDuplicates counts recipients retried after an attempt was interrupted (the
	// process died mid-delivery), whose remote server may already have the message.
	PossibleDuplicates prometheus.Counter
	// InFlight is the number of messages being delivered.
	InFlight prometheus.Gauge
	// PacedSeconds is how long transactions waited for delivery to catch up (Pace),
	// one observation per transaction that waited.
	PacedSeconds prometheus.Histogram
	// WaitingForConfig is 1 while the runner holds the queue back because no config
	// has been loaded yet (RunnerOptions.Loaded), 0 otherwise.
	WaitingForConfig prometheus.Gauge
}

const namespace, subsystem = "postwarden_relay", "delivery"

// policyLabel is a TLS policy's metric label: its source, or "default".
func policyLabel(source string) string {
	if source == "" {
		return "default"
	}
	return source
}

// NewMetrics creates the collectors and registers them with reg; a nil reg leaves them
// unregistered (tests, benchmarks).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	m := &Metrics{
		Recipients: prometheus.NewCounterVec(opts("recipients_total",
			"Recipient delivery outcomes by direction and result."), []string{"direction", "result"}),
		TLS: prometheus.NewCounterVec(opts("tls_transactions_total",
			"Delivery transactions by TLS policy, TLS version, cipher and certificate verification."),
			[]string{"policy", "tls_version", "cipher", "verified"}),
		TLSFallbacks: prometheus.NewCounterVec(opts("tls_plaintext_fallbacks_total",
			"Opportunistic sessions that fell back to plaintext after a failed TLS handshake."), []string{"policy"}),
		Connections: prometheus.NewCounterVec(opts("connections_total",
			"Outgoing SMTP sessions by result (opened, reused, failed)."), []string{"result"}),
		TransactionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "transaction_seconds",
			Help:    "Time from MAIL FROM to the reply after DATA.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8),
		}),
		Notifications: prometheus.NewCounterVec(opts("notifications_total",
			"Delivery status notifications queued, by kind (bounce, delay)."), []string{"kind"}),
		PossibleDuplicates: prometheus.NewCounter(opts("possible_duplicates_total",
			"Recipients retried after an interrupted attempt, which the remote server may already have.")),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "in_flight_messages", Help: "Messages being delivered."}),
		PacedSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "paced_seconds",
			Help:    "Time SMTP transactions waited at RCPT for delivery to catch up with acceptance (in_flow_delay).",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		WaitingForConfig: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem,
			Name: "waiting_for_config", Help: "1 while delivery holds the queue back until a first config is loaded."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.Recipients, m.TLS, m.TLSFallbacks, m.Connections,
		m.TransactionSeconds, m.Notifications, m.PossibleDuplicates, m.InFlight, m.PacedSeconds, m.WaitingForConfig} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering delivery metrics: %w", err)
		}
	}
	return m, nil
}
