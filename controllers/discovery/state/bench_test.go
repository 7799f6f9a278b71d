package state

import (
	"fmt"
	"testing"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

// BenchmarkMerge50k merges a batch of 5,000 observations into a domain's full state of
// 50,000 addresses, as the operator does on each publication.
func BenchmarkMerge50k(b *testing.B) {
	p := testPolicy(func(p *Policy) { p.ExpiryDays = 365 })
	var items []discoverystate.Observation
	for i := range 50000 {
		items = append(items, o(discoverystate.Verified, fmt.Sprintf("user%05d@example.com", i), days(0)))
	}
	st := Merge(State{}, []discoverystate.Batch{obs("j", 1, items...)}, p, days(0))
	var batch []discoverystate.Observation
	for i := range 5000 {
		batch = append(batch, o(discoverystate.Delivered, fmt.Sprintf("user%05d@example.com", i*10), days(1)))
	}
	next := obs("j", 50001, batch...)
	for b.Loop() {
		_ = Merge(st, []discoverystate.Batch{next}, p, days(1))
	}
	data, _ := EncodeState(st)
	b.ReportMetric(float64(len(data)), "state-bytes")
}
