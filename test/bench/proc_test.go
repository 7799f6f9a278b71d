package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on Linux for every
// architecture's user-space ABI.
const userHZ = 100

// procStat is what the benchmarks read from /proc/PID/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
	rssPages                     int64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// comm is in parentheses and may itself hold spaces or parentheses.
	open, closing := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
	if open < 0 || closing < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(data[closing+1:]))
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v } // man proc numbering
	return procStat{
		ppid:  int(n(4)),
		utime: n(14), stime: n(15), cutime: n(16), cstime: n(17), rssPages: n(24),
	}, nil
}

func ticks(t int64) time.Duration { return time.Duration(t) * time.Second / userHZ }

// processCPU is the CPU time a process has used, user plus system.
func processCPU(pid int) time.Duration {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return ticks(st.utime + st.stime)
}

// children returns the stats of the live processes whose parent is pid.
func children(pid int) map[int]procStat {
	out := make(map[int]procStat)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(child); err == nil && st.ppid == pid {
			out[child] = st
		}
	}
	return out
}

// treeCPU is the CPU time of a process, its reaped children (cutime, cstime) and its live
// children: every Postfix daemon is a child of master, so this is the whole instance,
// continuous across daemons that exit between two readings.
func treeCPU(pid int) time.Duration {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	total := st.utime + st.stime + st.cutime + st.cstime
	for _, c := range children(pid) {
		total += c.utime + c.stime
	}
	return ticks(total)
}

// treePSSKiB sums the proportional set size (smaps_rollup's Pss) of a process and its
// live children: pages they share are split among them, so the sum is the instance's
// real footprint, where adding up resident sets would count libraries once per daemon.
func treePSSKiB(pid int) float64 {
	total := pssKiB(pid)
	for child := range children(pid) {
		total += pssKiB(child)
	}
	return total
}

func pssKiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if value, ok := strings.CutPrefix(line, "Pss:"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
			return v
		}
	}
	return 0
}
