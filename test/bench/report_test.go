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

// The kinds of load in the comparison.
const (
	endToEnd       = "end to end"
	fixedAtOwn     = "fixed, 70% of own max"
	fixedAtPostfix = "fixed, 70% of postfix's max"
)

type resultKey struct {
	system string
	kind   string
	size   int
	conns  int
}

type result struct {
	msgsPerSec float64   // to the last 250, or end to end to the last arrival at the sink
	submit     latencies // to the 250 after DATA
	endToEnd   latencies // to the arrival at the sink; zero for submission loads
	cpuPerMsg  time.Duration
	rssMiB     float64
	// offered and maxPerSec, for a fixed rate: the rate offered, and the maximum
	// end-to-end throughput it is a share of.
	offered, maxPerSec float64
	n                  int
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
	lat := func(f func(result) latencies) latencies {
		return latencies{
			p50: d(func(r result) time.Duration { return f(r).p50 }),
			p90: d(func(r result) time.Duration { return f(r).p90 }),
			p99: d(func(r result) time.Duration { return f(r).p99 }),
			max: d(func(r result) time.Duration { return f(r).max }),
		}
	}
	return result{
		msgsPerSec: med(func(r result) float64 { return r.msgsPerSec }),
		submit:     lat(func(r result) latencies { return r.submit }),
		endToEnd:   lat(func(r result) latencies { return r.endToEnd }),
		cpuPerMsg:  d(func(r result) time.Duration { return r.cpuPerMsg }),
		rssMiB:     med(func(r result) float64 { return r.rssMiB }),
		offered:    med(func(r result) float64 { return r.offered }),
		maxPerSec:  med(func(r result) float64 { return r.maxPerSec }),
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
// ratio ours/Postfix: above 1 is better for throughput, below 1 for CPU and latency; then
// the fixed-rate runs in full.
func printComparison(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	runs := map[string]int{}
	for k, rs := range results {
		_, n := summary(rs)
		runs[k.system] = max(runs[k.system], n)
	}
	fmt.Fprintln(w, "\nPostwarden relay vs Postfix, same machine, same load (ratio = ours / postfix)")
	fmt.Fprintf(w, "Each cell is the median of up to %d runs of the relay and %d of Postfix, each load on both back to back.\n",
		runs[ours], runs[postfix])
	fmt.Fprintln(w, "Both take mail only after STARTTLS and AUTH PLAIN, check the sender against the login, and deliver to the sink as it comes (Postfix's queue manager on, at its defaults).")
	fmt.Fprintln(w, "msgs/s and p50, p99: to the arrival at the sink; submit p99: to the 250; CPU: all the server's work, delivery included.")
	fmt.Fprintf(w, "fixed: an open loop at %.0f%% of the end-to-end maximum the system showed just before (own max), or the relay at Postfix's rate beside Postfix (postfix's max);\n", fixedShare*100)
	fmt.Fprintln(w, "its latencies run from each message's scheduled time.")
	if skipped != "" {
		fmt.Fprintf(w, "Postfix not measured: %s\n", skipped)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tsize\tconns\tmsgs/s ours\tpostfix\tratio\tCPU ms/msg ours\tpostfix\tratio\t"+
		"submit p99 ms ours\tpostfix\tratio\tp50 ms ours\tpostfix\tratio\tp99 ms ours\tpostfix\tratio\t")
	for _, r := range rows() {
		oRuns, haveOurs := results[r.ours]
		pRuns, havePostfix := results[r.postfix]
		o, _ := summary(oRuns)
		p, _ := summary(pRuns)
		cells := []string{r.ours.kind, size(r.ours.size), fmt.Sprint(r.ours.conns)}
		triple := func(format string, a, b float64) {
			cells = append(cells, cell(haveOurs, format, a), cell(havePostfix, format, b), "-")
			if haveOurs && havePostfix && b != 0 {
				cells[len(cells)-1] = fmt.Sprintf("%.2f", a/b)
			}
		}
		triple("%.1f", o.msgsPerSec, p.msgsPerSec)
		triple("%.2f", ms(o.cpuPerMsg), ms(p.cpuPerMsg))
		triple("%.1f", ms(o.submit.p99), ms(p.submit.p99))
		triple("%.1f", ms(o.endToEnd.p50), ms(p.endToEnd.p50))
		triple("%.1f", ms(o.endToEnd.p99), ms(p.endToEnd.p99))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()
	printFixedRate(w)
	fmt.Fprintln(w)
}

// printFixedRate lists the fixed-rate runs, each system's figures in full.
func printFixedRate(w io.Writer) {
	var keys []resultKey
	for k := range results {
		if k.kind == fixedAtOwn || k.kind == fixedAtPostfix {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	slices.SortFunc(keys, func(a, b resultKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), -cmp.Compare(a.system, b.system))
	})
	fmt.Fprintf(w, "\nFixed rate, %s, %d connections, open loop: latency from each message's scheduled time\n", size(fixedLoad.size), fixedLoad.conns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tsystem\tmax msgs/s\toffered\tachieved\tp50 ms\tp90\tp99\tmax\tsubmit p99 ms\tCPU ms/msg\t")
	for _, k := range keys {
		r, _ := summary(results[k])
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t\n", k.kind, k.system,
			r.maxPerSec, r.offered, r.msgsPerSec, ms(r.endToEnd.p50), ms(r.endToEnd.p90), ms(r.endToEnd.p99),
			ms(r.endToEnd.max), ms(r.submit.p99), ms(r.cpuPerMsg))
	}
	_ = tw.Flush()
}

// row is a line of the comparison: the relay's results and Postfix's under the same load.
type row struct{ ours, postfix resultKey }

// rows pairs what was measured, end to end loads first: a load's own pair, except for the
// relay at Postfix's fixed rate, which is beside Postfix at that rate, its own.
func rows() []row {
	seen := map[row]bool{}
	for k := range results {
		k.system = ours
		p := k
		p.system = postfix
		if k.kind == fixedAtPostfix {
			p.kind = fixedAtOwn
		}
		seen[row{k, p}] = true
	}
	return slices.SortedFunc(maps.Keys(seen), func(a, b row) int {
		return cmp.Or(cmp.Compare(a.ours.kind, b.ours.kind), cmp.Compare(a.ours.size, b.ours.size),
			cmp.Compare(a.ours.conns, b.ours.conns))
	})
}

func cell(have bool, format string, v float64) string {
	if !have {
		return "-"
	}
	return fmt.Sprintf(format, v)
}
