package controllers

// ForTests returns opts for tests: managers may share a process (controller names
// repeat), and the config is split into shards of shardBytes, so that every test reads
// a config split over several Secrets.
func ForTests(opts OperatorOptions, shardBytes int) OperatorOptions {
	opts.tests = testSettings{skipNameValidation: true, shardBytes: shardBytes}
	return opts
}
