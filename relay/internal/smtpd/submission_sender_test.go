package smtpd

// senderRefusals are the TestSubmissionRefusals cases of who a message may claim to be
// from: the envelope sender at MAIL, and the From: header and header syntax after DATA.
func senderRefusals() map[string]refusalCase {
	return map[string]refusalCase{
		"a sender of another domain gets 553 5.7.1": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<app@relay.example>")
			},
			want: "553 5.7.1 Sender address <app@relay.example> is not allowed for user alice-relay",
		},
		"an invalid address of the credential's domain is not a sender": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<gone@example.com>")
			},
			want: "553 5.7.1 ",
		},
		"an unlisted address of the credential's domain is not a sender": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<ceo@example.com>")
			},
			want: "553 5.7.1 ",
		},
		"a pending discovered address is not a sender": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<seen@example.com>")
			},
			want: "553 5.7.1 ",
		},
		"allowed senders restrict a credential to them": {
			run: func(e *testEnv) string {
				return e.submission("bob-relay", bobPassword).cmd("MAIL FROM:<bob@example.com>")
			},
			want: "553 5.7.1 ",
		},
		"the null sender is refused on submission": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<>")
			},
			want: "553 5.7.1 ",
		},
		"a percent-hack sender is refused": {
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<alice%foreign.example@example.com>")
			},
			want: "553 5.1.7 ",
		},
		"a From: header of another address is refused after DATA": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("Boss <ceo@bank.example>", "x@foreign.example", "pay"))
			},
			want: "553 5.7.1 From: address <ceo@bank.example> is not allowed for user alice-relay",
		},
		"a From: header outside bob's allowed senders is refused": {
			run: func(e *testEnv) string {
				c := e.submission("bob-relay", bobPassword)
				c.expect("MAIL FROM:<noreply@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com", "x@foreign.example", "hi"))
			},
			want: "553 5.7.1 ",
		},
		"two From: headers are refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data("From: alice@example.com\r\n" + msg("ceo@bank.example", "x@foreign.example", "hi"))
			},
			want: "550 5.7.1 Message must have exactly one From: header",
		},
		"a From: header with two addresses is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com, ceo@bank.example", "x@foreign.example", "hi"))
			},
			want: "550 5.7.1 ",
		},
		"a From header with space before the colon is refused (obsolete syntax hides a second author)": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data("From : Boss <ceo@bank.example>\r\n" + msg("alice@example.com", "x@foreign.example", "pay"))
			},
			want: "550 5.6.0 Malformed message header",
		},
		"a header field name with a control character is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data("X-\x01Tag: 1\r\n" + msg("alice@example.com", "x@foreign.example", "hi"))
			},
			want: "550 5.6.0 Malformed message header",
		},
		"a header line without a colon is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data("From ceo@bank.example\r\n" + msg("alice@example.com", "x@foreign.example", "hi"))
			},
			want: "550 5.6.0 Malformed message header",
		},
		"a message without From: is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data("Subject: x\r\n\r\nbody\r\n")
			},
			want: "550 5.7.1 ",
		},
	}
}
