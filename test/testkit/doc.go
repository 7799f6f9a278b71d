// Package testkit is the one test kit of the repository: every package's tests, the
// in-process end-to-end suite, the benchmarks and the local dev environment take their
// fakes from here instead of keeping a copy each. It owns:
//
//   - a scripted downstream SMTP server (smtp*.go): go-smtp on loopback that records what
//     it accepts, offers STARTTLS and AUTH PLAIN when told, saves messages as .eml files
//     when told, and answers with injected replies at connect, MAIL, RCPT or DATA;
//   - an authoritative DNS server on loopback UDP (dns.go) that answers from records in
//     zone-file syntax, and fails or drops the names it is told to;
//   - a throw-away PKI (pki.go): CAs and the certificates they issue, with options for
//     names, lifetimes and reproducible bytes for golden files;
//   - polling (poll.go), for waiting on a condition instead of sleeping;
//   - a log buffer (logs.go) that reads JSON log lines back as records.
//
// The package does not import testing, so that a program that is not a test (the dev
// environment, `postwarden dev`) can link it: what can fail has a constructor returning
// an error (NewServer, NewDNSServer, GenerateCA, CA.Issue), and beside it a thin wrapper
// for tests that takes a TB and stops the fake when the test ends (Start, StartDNS,
// NewCA, CA.Leaf).
package testkit

// TB is the part of testing.TB the kit uses; *testing.T, *testing.B, *testing.F and any
// testing.TB satisfy it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}
