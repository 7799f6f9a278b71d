package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config are the metrics of config loading: reloads, the snapshot in force, the STARTTLS
// certificates, and connections dropped for a bad PROXY protocol header.
type Config struct {
	// Reloads counts attempts to apply a new snapshot or certificate set, by result
	// ("success" or "failure").
	Reloads *prometheus.CounterVec
	// Info is 1 for the hash of the snapshot in force, as a label.
	Info *prometheus.GaugeVec
	// LastSuccess and LastFailure are the Unix times of the last applied and the last
	// refused reload; time() - LastSuccess is the age of the config.
	LastSuccess prometheus.Gauge
	LastFailure prometheus.Gauge
	// Certificates is the number of STARTTLS certificates loaded.
	Certificates prometheus.Gauge
	// CertificateExpiry is the earliest NotAfter of the loaded certificates, in Unix
	// seconds (0 when none).
	CertificateExpiry prometheus.Gauge
	// ProxyRejects counts connections from trusted balancers dropped for a missing or
	// malformed PROXY protocol header, by listener mode.
	ProxyRejects *prometheus.CounterVec
}

// NewConfig creates the config metrics and registers them with reg (nil: not
// registered, for tests).
func NewConfig(reg prometheus.Registerer) *Config {
	m := &Config{
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "config", Name: "reloads_total",
			Help: "Attempts to apply a new relay config or certificate set, by result.",
		}, []string{"result"}),
		Info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "info",
			Help: "1 for the hash of the config snapshot in force.",
		}, []string{"hash"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last applied config.",
		}),
		LastFailure: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "config", Name: "last_failure_timestamp_seconds",
			Help: "Unix time of the last refused config.",
		}),
		Certificates: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "tls", Name: "certificates",
			Help: "STARTTLS certificates loaded.",
		}),
		CertificateExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "tls", Name: "certificate_expiry_timestamp_seconds",
			Help: "Earliest expiry of the loaded STARTTLS certificates, in Unix seconds.",
		}),
		ProxyRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "smtp", Name: "proxy_header_rejects_total",
			Help: "Connections from trusted balancers dropped for a missing or malformed PROXY header.",
		}, []string{"mode"}),
	}
	m.Reloads.WithLabelValues("success")
	m.Reloads.WithLabelValues("failure")
	if reg != nil {
		reg.MustRegister(m.Reloads, m.Info, m.LastSuccess, m.LastFailure, m.Certificates,
			m.CertificateExpiry, m.ProxyRejects)
	}
	return m
}

// Applied records a successful reload of the snapshot with hash, at now.
func (m *Config) Applied(hash string, now time.Time) {
	m.Reloads.WithLabelValues("success").Inc()
	m.Info.Reset()
	m.Info.WithLabelValues(hash).Set(1)
	m.LastSuccess.Set(float64(now.Unix()))
}

// Refused records a reload that failed and left the previous config in force.
func (m *Config) Refused(now time.Time) {
	m.Reloads.WithLabelValues("failure").Inc()
	m.LastFailure.Set(float64(now.Unix()))
}
