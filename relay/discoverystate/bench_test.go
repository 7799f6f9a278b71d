package discoverystate

import (
	"fmt"
	"testing"
)

// BenchmarkMerge50k merges a batch of 5,000 observations into a domain's full state of
// 50,000 addresses, as the operator does on each publication.
func BenchmarkMerge50k(b *testing.B) {
	p := testPolicy(func(p *Policy) { p.ExpiryDays = 365 })
	var items []Observation
	for i := range 50000 {
		items = append(items, o(Verified, fmt.Sprintf("user%05d@example.com", i), days(0)))
	}
	st := Merge(State{}, []Batch{obs("j", 1, items...)}, p, days(0))
	var batch []Observation
	for i := range 5000 {
		batch = append(batch, o(Delivered, fmt.Sprintf("user%05d@example.com", i*10), days(1)))
	}
	next := obs("j", 50001, batch...)
	for b.Loop() {
		_ = Merge(st, []Batch{next}, p, days(1))
	}
	data, _ := EncodeState(st)
	b.ReportMetric(float64(len(data)), "state-bytes")
}
