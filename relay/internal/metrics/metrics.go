// Package metrics holds the relay's Prometheus metrics. One Metrics value is created at
// start-up and shared by the packages that count things; its fields are exported so that
// each package can count what it owns, and so that other files of this package can add
// fields for their own concerns.
package metrics

import "github.com/prometheus/client_golang/prometheus"

const namespace = "postwarden_relay"

// Metrics are the relay's SMTP front-door counters.
type Metrics struct {
	// Connections counts TCP connections by listener mode ("submission" or "inbound") and
	// outcome ("accepted", or the limit that refused it: "limit_total", "limit_per_ip",
	// "limit_rate"), or "evicted" for an idle connection closed to admit a new one when the
	// listener was full.
	Connections *prometheus.CounterVec
	// ActiveConnections is the number of open connections by mode.
	ActiveConnections *prometheus.GaugeVec
	// AuthSuccesses counts successful AUTH exchanges by mechanism.
	AuthSuccesses *prometheus.CounterVec
	// AuthFailures counts failed AUTH exchanges by reason (bad_credentials, throttled,
	// malformed, authzid_mismatch, tls_required, unsupported).
	AuthFailures *prometheus.CounterVec
	// MessagesAccepted counts messages queued, by direction ("outbound" or "inbound").
	MessagesAccepted *prometheus.CounterVec
	// MessagesRejected counts rejected commands and messages by reason (a short
	// snake_case word such as relay_denied, sender_not_allowed, unknown_recipient).
	MessagesRejected *prometheus.CounterVec
	// BytesReceived counts message bytes handed to the queue (accepted or not).
	BytesReceived prometheus.Counter
	// Replies counts the replies produced by the error mapper by basic and enhanced code.
	Replies *prometheus.CounterVec
	// DKIMSigned counts messages queued with a DKIM signature, by algorithm
	// ("rsa-sha256", "ed25519-sha256"): a message signed with both keys counts once
	// under each.
	DKIMSigned *prometheus.CounterVec
	// SendLimited counts transactions refused by a credential's sending limits, by limit.
	SendLimited *prometheus.CounterVec
	// CredentialMessages counts, by credential ("<namespace>/<name>" of the
	// SMTPCredential) and result ("sent": queued; "limited": refused by a sending
	// limit), what each credential sends through this relay.
	CredentialMessages *prometheus.CounterVec
}

// New creates the metrics and registers them with reg (nil: not registered, for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "connections_total",
			Help: "SMTP connections by listener mode and outcome.",
		}, []string{"mode", "outcome"}),
		ActiveConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "active_connections",
			Help: "Open SMTP connections by listener mode.",
		}, []string{"mode"}),
		AuthSuccesses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "auth_successes_total",
			Help: "Successful SMTP AUTH exchanges by mechanism.",
		}, []string{"mechanism"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "auth_failures_total",
			Help: "Failed SMTP AUTH exchanges by reason.",
		}, []string{"reason"}),
		MessagesAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "messages_accepted_total",
			Help: "Messages accepted into the queue by direction.",
		}, []string{"direction"}),
		MessagesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "messages_rejected_total",
			Help: "Rejected SMTP commands and messages by reason.",
		}, []string{"reason"}),
		BytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "received_bytes_total",
			Help: "Message bytes received in DATA or BDAT.",
		}),
		Replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "replies_total",
			Help: "Replies produced by the relay's error mapper by code and enhanced code.",
		}, []string{"code", "enhanced"}),
		DKIMSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "dkim_signed_total",
			Help: "Messages queued with a DKIM signature, by signing algorithm.",
		}, []string{"algorithm"}),
		SendLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "send_limited_total",
			Help: "MAIL and RCPT commands refused by a credential's sending limits, by limit.",
		}, []string{"limit"}),
		CredentialMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "credential_messages_total",
			Help: "Messages each credential sent (queued) or had refused by its sending limits.",
		}, []string{"credential", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.ActiveConnections, m.AuthSuccesses, m.AuthFailures,
			m.MessagesAccepted, m.MessagesRejected, m.BytesReceived, m.Replies, m.DKIMSigned, m.SendLimited, m.CredentialMessages)
	}
	return m
}
