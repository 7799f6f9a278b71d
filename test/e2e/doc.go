// Package e2e is the user's story end to end: kubectl applies Postwarden's objects to a
// real API server, the operator and a relay (test/dev) enforce them, and real SMTP
// clients (Go's and swaks) send mail through loopback to MX servers found through a
// loopback DNS server. Each step prints how long the change took to be enforced.
package e2e
