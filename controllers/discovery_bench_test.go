package controllers_test

import (
	"fmt"
	"testing"
	"time"

	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// BenchmarkDiscoveryMergePass measures, against the API server, the time from a relay
// publishing a batch of 100 clean deliveries to the operator acknowledging it: reading
// the batch, merging it into a 5,000-address state, writing the changed state parts and
// the acknowledgement (the merge interval is 100 ms in tests).
func BenchmarkDiscoveryMergePass(b *testing.B) {
	t := b
	ns := newNamespace(t, "bench")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "listed@"+domain))
	create(t, discoveryPolicy(ns, "learn", 1000, "main"))
	now := discoveryClock.Now().UTC().Truncate(time.Second)
	const addresses = 5000
	var obs []discoverystate.Observation
	for i := range addresses {
		obs = append(obs, discoverystate.Observation{Seq: uint64(i + 1), Kind: discoverystate.Verified,
			Address: fmt.Sprintf("user%05d@%s", i, domain), Time: now})
	}
	pod, journal := "bench-"+ns, "journal-"+ns
	start := time.Now()
	publish(t, pod, journal, obs...)
	waitAck(t, pod, discoverystate.AckValue(journal, addresses))
	b.Logf("first merge of %d observations: %s", addresses, time.Since(start).Round(time.Millisecond))
	snapshotWhere(t, "the addresses reach the config", func(s *snapshot.Snapshot) error {
		if n := len(discovered(s, domain)); n != addresses {
			return fmt.Errorf("%d discovered", n)
		}
		return nil
	})
	seq := uint64(addresses)
	b.ResetTimer()
	for range b.N {
		var batch []discoverystate.Observation
		for j := range 100 {
			seq++
			batch = append(batch, discoverystate.Observation{Seq: seq, Kind: discoverystate.Delivered,
				Address: fmt.Sprintf("user%05d@%s", (int(seq)*7+j)%addresses, domain), Time: now})
		}
		publish(t, pod, journal, batch...)
		waitAck(t, pod, discoverystate.AckValue(journal, seq))
	}
	b.StopTimer()
	_, cms, err := stateOf(t, ns, "learn")
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, cm := range cms {
		size += len(cm.Data[dstate.StateKey])
	}
	b.ReportMetric(float64(len(cms)), "parts")
	b.ReportMetric(float64(size), "state-bytes")
}
