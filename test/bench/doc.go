// Package bench measures the relay end to end: it builds the postwarden binary, runs
// `postwarden relay` on loopback with a file config, and submits 4 KiB messages over
// STARTTLS and AUTH PLAIN from 1, 8 and 32 concurrent connections, reporting messages
// per second, p50 and p99 latency, and the relay process's resident memory.
//
//	go test ./test/bench -run '^$' -bench . -benchtime 2000x
//
// Figures depend on the machine and on the spool's disk (every message is fsynced
// before its 250), so the benchmarks assert nothing about them.
package bench
