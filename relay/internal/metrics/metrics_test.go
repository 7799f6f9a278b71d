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
