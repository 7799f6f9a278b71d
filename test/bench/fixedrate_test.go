package bench

import "testing"

// fixedShare is the share of a system's maximum throughput that BenchmarkFixedRate
// offers it: a busy but sustainable rate, where latency shows how a server copes with
// bursts of arrivals rather than how long its backlog has grown.
const fixedShare = 0.7

// fixedLoad is the load whose maximum BenchmarkFixedRate measures and then offers at a
// fixed rate: 4 KiB messages from 32 sessions, end to end.
var fixedLoad = load{conns: 32, size: smallMessage, endToEnd: true}

// BenchmarkFixedRate offers each system 70% of the end-to-end throughput it has just
// shown, as an open-loop schedule: it measures the maximum with b.N messages in a closed
// loop, then offers b.N more, each due at its scheduled time, and reports end-to-end
// latency (p50, p90, p99, max) and submission latency, all from that time. The relay
// then gets the rate offered to Postfix, so the two are also compared under the same
// load; that run skips when Postfix was not measured.
func BenchmarkFixedRate(b *testing.B) {
	name := fixedLoad.name() + "/rate="
	b.Run(name+"70%-of-own-max/system="+ours, func(b *testing.B) {
		fixedRate(b, deliveringTarget(b), fixedAtOwn, 0)
	})
	b.Run(name+"70%-of-own-max/system="+postfix, func(b *testing.B) {
		fixedRate(b, startPostfix(b).target, fixedAtOwn, 0)
	})
	b.Run(name+"70%-of-postfix-max/system="+ours, func(b *testing.B) {
		most := postfixMax()
		if most == 0 {
			b.Skip("postfix's maximum was not measured in this run")
		}
		fixedRate(b, deliveringTarget(b), fixedAtPostfix, most)
	})
}

// fixedRate offers fixedShare of most to t, first measuring most when it is 0.
func fixedRate(b *testing.B, t *target, kind string, most float64) {
	if most == 0 {
		most = run(b, t, fixedLoad, 0).msgsPerSec
	}
	r := run(b, t, fixedLoad, fixedShare*most)
	r.offered, r.maxPerSec = fixedShare*most, most
	reportMetrics(b, t, fixedLoad, r)
	b.ReportMetric(ms(r.endToEnd.p90), "p90-ms")
	b.ReportMetric(ms(r.endToEnd.max), "max-ms")
	b.ReportMetric(r.offered, "offered-msgs/s")
	b.ReportMetric(most, "max-msgs/s")
	record(resultKey{system: t.system, kind: kind, size: fixedLoad.size, conns: fixedLoad.conns}, r)
}

// postfixMax is the median maximum Postfix has shown in BenchmarkFixedRate so far.
func postfixMax() float64 {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	r, _ := summary(results[resultKey{system: postfix, kind: fixedAtOwn, size: fixedLoad.size, conns: fixedLoad.conns}])
	return r.maxPerSec
}
