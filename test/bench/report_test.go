package bench

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The systems compared.
const (
	ours    = "postwarden"
	postfix = "postfix"
)

type resultKey struct {
	system string
	kind   string
	size   int
	conns  int
}

type result struct {
	msgsPerSec float64
	p50, p99   time.Duration
	cpuPerMsg  time.Duration
	rssMiB     float64
	n          int
}

var (
	resultsMu sync.Mutex
	results   = map[resultKey][]result{}
	// skipped says why Postfix was not measured.
	skipped string
)

// record keeps every run of each benchmark; with -count N there are N that count.
func record(k resultKey, r result) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[k] = append(results[k], r)
}

// summary is the median, metric by metric, of a benchmark's runs of the largest b.N: the
// testing package runs one message first, then b.N, and only the latter counts.
func summary(runs []result) (result, int) {
	most := 0
	for _, r := range runs {
		most = max(most, r.n)
	}
	var kept []result
	for _, r := range runs {
		if r.n == most {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		return result{}, 0
	}
	med := func(f func(result) float64) float64 {
		v := make([]float64, len(kept))
		for i, r := range kept {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	d := func(f func(result) time.Duration) time.Duration {
		return time.Duration(med(func(r result) float64 { return float64(f(r)) }))
	}
	return result{
		msgsPerSec: med(func(r result) float64 { return r.msgsPerSec }),
		p50:        d(func(r result) time.Duration { return r.p50 }),
		p99:        d(func(r result) time.Duration { return r.p99 }),
		cpuPerMsg:  d(func(r result) time.Duration { return r.cpuPerMsg }),
		rssMiB:     med(func(r result) float64 { return r.rssMiB }),
		n:          most,
	}, len(kept)
}

func noteSkip(reason string) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	skipped = reason
}

func size(n int) string { return fmt.Sprintf("%d KiB", n>>10) }

// printComparison writes our figures beside Postfix's under the same load, with the
// ratio ours/Postfix: above 1 is better for throughput, below 1 for CPU and latency.
func printComparison(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	type row struct {
		kind        string
		size, conns int
	}
	rows := map[row]bool{}
	for k := range results {
		rows[row{k.kind, k.size, k.conns}] = true
	}
	sorted := slices.SortedFunc(maps.Keys(rows), func(a, b row) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.size, b.size), cmp.Compare(a.conns, b.conns))
	})
	runs := map[string]int{}
	for k, rs := range results {
		_, n := summary(rs)
		runs[k.system] = max(runs[k.system], n)
	}
	fmt.Fprintln(w, "\nPostwarden relay vs Postfix, same machine, same load (ratio = ours / postfix)")
	fmt.Fprintf(w, "Each cell is the median of up to %d runs of the relay (BenchmarkVersusPostfix's and the relay-only benchmarks') and %d of Postfix.\n",
		runs[ours], runs[postfix])
	fmt.Fprintln(w, "Postfix accepts by client address (mynetworks) without SASL; the relay authenticates every session, so it does more work per message.")
	if skipped != "" {
		fmt.Fprintf(w, "Postfix not measured: %s\n", skipped)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tsize\tconns\tmsgs/s ours\tpostfix\tratio\tp50 ms ours\tpostfix\tp99 ms ours\tpostfix\tCPU ms/msg ours\tpostfix\tratio\t")
	for _, r := range sorted {
		oRuns, haveOurs := results[resultKey{ours, r.kind, r.size, r.conns}]
		pRuns, havePostfix := results[resultKey{postfix, r.kind, r.size, r.conns}]
		o, _ := summary(oRuns)
		p, _ := summary(pRuns)
		cells := []string{r.kind, size(r.size), fmt.Sprint(r.conns)}
		num := func(have bool, v float64) string {
			if !have {
				return "-"
			}
			return fmt.Sprintf("%.1f", v)
		}
		ratio := func(a, b float64) string {
			if !haveOurs || !havePostfix || b == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		cells = append(cells,
			num(haveOurs, o.msgsPerSec), num(havePostfix, p.msgsPerSec), ratio(o.msgsPerSec, p.msgsPerSec),
			num(haveOurs, ms(o.p50)), num(havePostfix, ms(p.p50)),
			num(haveOurs, ms(o.p99)), num(havePostfix, ms(p.p99)),
			fmt.Sprintf("%.2f", ms(o.cpuPerMsg)), fmt.Sprintf("%.2f", ms(p.cpuPerMsg)), ratio(ms(o.cpuPerMsg), ms(p.cpuPerMsg)))
		if !haveOurs {
			cells[10] = "-"
		}
		if !havePostfix {
			cells[11] = "-"
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}
