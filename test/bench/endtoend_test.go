package bench

import (
	"fmt"
	"testing"
)

// endToEndLoads are the end-to-end loads both systems get.
var endToEndLoads = []load{
	{conns: 1, size: smallMessage, endToEnd: true},
	{conns: 8, size: smallMessage, endToEnd: true},
	{conns: 32, size: smallMessage, endToEnd: true},
	{conns: 64, size: smallMessage, endToEnd: true},
	{conns: 8, size: smallMessage, endToEnd: true, perMessage: true},
	{conns: 8, size: largeMessage, endToEnd: true},
	{conns: 32, size: largeMessage, endToEnd: true},
}

func (l load) name() string {
	name := fmt.Sprintf("size=%dKiB/conns=%d", l.size>>10, l.conns)
	if l.perMessage {
		name += "/connection-per-message"
	}
	return name
}

// BenchmarkEndToEnd: submission over STARTTLS and AUTH to the relay, which delivers
// through its smarthost, the sink; latency runs from the start of a submission to the
// sink's receipt of the message.
func BenchmarkEndToEnd(b *testing.B) {
	for _, l := range endToEndLoads {
		b.Run(l.name(), func(b *testing.B) {
			r, s := startDeliveringRelay(b)
			t := r.target()
			t.sink = s
			queries, conns := benchDNS.Queries(), s.Connections()
			measure(b, t, l)
			b.ReportMetric(float64(benchDNS.Queries()-queries)/float64(b.N), "dns-queries/msg")
			// Sessions the relay opened to the smarthost; below 1 means reuse.
			b.ReportMetric(float64(s.Connections()-conns)/float64(b.N), "sink-conns/msg")
		})
	}
}
