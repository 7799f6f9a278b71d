// Package bench measures the relay from outside: it builds the postwarden binary, runs
// `postwarden relay` on loopback with a file config, and submits messages over STARTTLS
// and AUTH PLAIN from 1, 8 and 32 concurrent connections.
//
//   - BenchmarkSubmission, BenchmarkSubmissionNewConnection: 4 KiB messages into a relay
//     that keeps them in its spool (--delivery=false). The relay alone: Postfix has no
//     such mode that users run.
//   - BenchmarkEndToEnd: 4 KiB and 100 KiB messages into a relay that delivers them
//     through --smarthost to a sink SMTP server in this process, which matches each
//     arrival to its submission by Message-ID. A resolver on loopback answers the relay's
//     DNS queries, so nothing leaves the machine.
//   - BenchmarkVersusPostfix: the end-to-end loads, each on the relay and then, back to
//     back, on a private Postfix instance (hack/bench-postfix.sh) relaying to the same
//     sink. Postfix is set up as a submission relay is run: it relays only for clients
//     logged in with AUTH PLAIN after STARTTLS (Cyrus SASL, a sasldb holding the relay's
//     credential), checks the sender against the login, and its queue manager delivers
//     as mail comes, at its defaults (in_flow_delay included). Both systems deliver as
//     they accept, so submission latency (to the 250) is compared under these loads.
//   - BenchmarkFixedRate: each system's maximum end-to-end throughput at 4 KiB and 32
//     connections, measured with b.N messages in a closed loop, then 70% of it offered
//     as an open loop of b.N more: message i is due at start + i/rate, the first free
//     connection sends it, and its latencies run from when it was due, so that waiting
//     for a connection counts (no coordinated omission). The relay then also gets the
//     rate offered to Postfix, to compare both under the same load.
//
// The Postfix halves skip, saying why, where Postfix cannot be installed or run (it
// needs root).
//
// Each reports messages per second, p50 and p99 latency (end to end where the load is,
// with submit-p99-ms to the 250 beside it), the server's CPU time per message (from
// /proc/PID/stat: the relay process; the Postfix master and all its daemons) and its
// memory; BenchmarkEndToEnd also the sessions the relay opened to the sink per message,
// BenchmarkFixedRate also p90, max, the rate offered and the maximum it is a share of.
// After the run, a table puts the relay beside Postfix, with the ratio ours / Postfix
// for throughput, CPU per message, submit p99 and end-to-end p50 and p99, and a second
// one lists the fixed-rate runs in full.
//
//	go test ./test/bench -run '^$' -bench . -benchtime 1000x
//
// BENCH_RELAY_ARGS adds flags to the delivering relay, to try other settings:
// BENCH_RELAY_ARGS=--delivery-per-destination=4.
//
// Figures depend on the machine and on its disk (both systems fsync every message before
// their 250), so the benchmarks assert nothing about them. docs/benchmarks.md has figures.
package bench
