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
	results   = map[resultKey]result{}
	// skipped says why Postfix was not measured.
	skipped string
)

// record keeps the last run of each benchmark: the testing package runs one message
// first, then b.N, and the larger run is the one that counts.
func record(k resultKey, r result) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[k] = r
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
	fmt.Fprintln(w, "\nPostwarden relay vs Postfix, same machine, same load (ratio = ours / postfix)")
	fmt.Fprintln(w, "Postfix accepts by client address (mynetworks) without SASL; the relay authenticates every session, so it does more work per message.")
	if skipped != "" {
		fmt.Fprintf(w, "Postfix not measured: %s\n", skipped)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tsize\tconns\tmsgs/s ours\tpostfix\tratio\tp50 ms ours\tpostfix\tp99 ms ours\tpostfix\tCPU ms/msg ours\tpostfix\tratio\t")
	for _, r := range sorted {
		o, haveOurs := results[resultKey{ours, r.kind, r.size, r.conns}]
		p, havePostfix := results[resultKey{postfix, r.kind, r.size, r.conns}]
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
