// Package bench measures the relay from outside: it builds the postwarden binary, runs
// `postwarden relay` on loopback with a file config, and submits messages over STARTTLS
// and AUTH PLAIN from 1, 8 and 32 concurrent connections.
//
//   - BenchmarkSubmission, BenchmarkSubmissionNewConnection: 4 KiB messages into a relay
//     that keeps them in its spool (--delivery=false).
//   - BenchmarkEndToEnd: 4 KiB and 100 KiB messages into a relay that delivers them
//     through --smarthost to a sink SMTP server in this process, which matches each
//     arrival to its submission by Message-ID. A resolver on loopback answers the relay's
//     DNS queries, so nothing leaves the machine.
//   - BenchmarkVersusPostfix: the submission and end-to-end loads, each on the relay and
//     then, back to back, on a private Postfix instance (hack/bench-postfix.sh) relaying to
//     the same sink. The Postfix halves skip, saying why, where Postfix cannot be
//     installed or run (it needs root).
//
// Each reports messages per second, p50 and p99 latency, the server's CPU time per
// message (from /proc/PID/stat: the relay process; the Postfix master and all its
// daemons) and its memory; BenchmarkEndToEnd also the sessions the relay opened to the
// sink per message. After the run, a table puts the relay beside Postfix.
//
//	go test ./test/bench -run '^$' -bench . -benchtime 1000x
//
// BENCH_RELAY_ARGS adds flags to the delivering relay, to try other settings:
// BENCH_RELAY_ARGS=--delivery-per-destination=4.
//
// Figures depend on the machine and on its disk (both systems fsync every message before
// their 250), so the benchmarks assert nothing about them. docs/benchmarks.md has figures.
package bench
