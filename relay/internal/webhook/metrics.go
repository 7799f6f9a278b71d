package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an event is dropped, the values of the reason label.
const (
	DropQueueFull       = "queue_full"       // the hand-off from delivery was full
	DropDiskFull        = "disk_full"        // the store held MaxDiskBytes
	DropNoKey           = "no_key"           // the domain's HMAC Secret is not there (yet)
	DropExpired         = "expired"          // still failing after GiveUp
	DropRejected        = "rejected"         // the receiver answered a 4xx other than 408 or 429
	DropEndpointChanged = "endpoint_changed" // the domain's URL changed or was removed
	DropError           = "error"            // the event could not be stored or read back
)

// Metrics are the sender's collectors. Labels are bounded: the event type (four values)
// and the drop reason (the constants above); never the domain or the URL, which tenants
// choose.
type Metrics struct {
	// Sent counts events a receiver acknowledged with a 2xx, by type.
	Sent *prometheus.CounterVec
	// Failed counts POSTs that failed and will be retried, by type.
	Failed *prometheus.CounterVec
	// Dropped counts events given up, by type and reason.
	Dropped *prometheus.CounterVec
	// Pending and PendingBytes are the events in the store, waiting to be sent.
	Pending, PendingBytes prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg; nil leaves them
// unregistered (tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "postwarden_relay", Subsystem: "delivery_events", Name: name, Help: help}
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "postwarden_relay", Subsystem: "delivery_events", Name: name, Help: help})
	}
	m := &Metrics{
		Sent:         prometheus.NewCounterVec(opts("sent_total", "Delivery events acknowledged by their endpoint, by type."), []string{"type"}),
		Failed:       prometheus.NewCounterVec(opts("failed_total", "Delivery event POSTs that failed and will be retried, by type."), []string{"type"}),
		Dropped:      prometheus.NewCounterVec(opts("dropped_total", "Delivery events given up, by type and reason."), []string{"type", "reason"}),
		Pending:      gauge("pending", "Delivery events stored and waiting to be sent."),
		PendingBytes: gauge("pending_bytes", "Bytes of the delivery events stored and waiting to be sent."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Sent, m.Failed, m.Dropped, m.Pending, m.PendingBytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering delivery event metrics: %w", err)
			}
		}
	}
	return m, nil
}
