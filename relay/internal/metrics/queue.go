package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/internal/spool"
)

// Queue are the gauges of what the spool holds, read from summary at each scrape: the
// queue size and the oldest message's age, as an operator of Postfix reads them in
// mailq.
type Queue struct {
	summary                          func() spool.Summary
	messages, recipients, bytes, age *prometheus.Desc
}

// NewQueue creates the queue gauges, reading summary at each scrape, and registers
// them with reg (nil: not registered, for tests).
func NewQueue(reg prometheus.Registerer, summary func() spool.Summary) *Queue {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "queue", name), help, labels, nil)
	}
	m := &Queue{
		summary: summary,
		messages: desc("messages", "Messages in the spool, by state: active (due or being delivered), "+
			"deferred (waiting for a retry) or held (by an administrator).", "state"),
		recipients: desc("recipients", "Recipients of queued messages still without a final outcome."),
		bytes:      desc("bytes", "Size of the queued message bodies."),
		age:        desc("oldest_message_age_seconds", "Time the oldest queued message has been in the spool; 0 when empty."),
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Queue) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.messages, m.recipients, m.bytes, m.age} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Queue) Collect(ch chan<- prometheus.Metric) {
	st := m.summary()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.messages, float64(st.Messages-st.Deferred-st.Held), "active")
	gauge(m.messages, float64(st.Deferred), "deferred")
	gauge(m.messages, float64(st.Held), "held")
	gauge(m.recipients, float64(st.Recipients))
	gauge(m.bytes, float64(st.Bytes))
	gauge(m.age, st.OldestAge.Seconds())
}
