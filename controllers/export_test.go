package controllers

import "time"

// ForTests returns opts for tests: managers may share a process (controller names
// repeat), the config is split into shards of shardBytes, so that every test reads
// a config split over several Secrets, DNS records not yet in place are looked up
// again every 200 ms instead of every two minutes, and an unused DKIM key goes after a
// second instead of ten minutes (a render takes milliseconds, far less).
func ForTests(opts OperatorOptions, shardBytes int) OperatorOptions {
	opts.tests = testSettings{skipNameValidation: true, shardBytes: shardBytes, pendingDNSCheck: 200 * time.Millisecond,
		staleKeyAge: time.Second}
	return opts
}
