package smtpd

import "strings"

// messageRefusals are the TestSubmissionRefusals cases of the message itself and its
// limits: bare CR and LF, sizes, recipients and line lengths.
func messageRefusals() map[string]refusalCase {
	return map[string]refusalCase{
		"a bare LF in the body is refused (SMTP smuggling)": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com", "x@foreign.example", "hi") +
					"line\n.\nMAIL FROM:<ceo@bank.example>\r\n")
			},
			want: "550 5.6.0 ",
		},
		"a bare CR in the body is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com", "x@foreign.example", "hi") + "line\r.\rmore\r\n")
			},
			want: "550 5.6.0 ",
		},
		"a message over the size limit gets 552 5.3.4": {
			limits: func(l *Limits) { l.MaxMessageBytes = 2000 },
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com", "x@foreign.example", "hi") + strings.Repeat("0123456789abcdef\r\n", 200))
			},
			want: "552 5.3.4 ",
		},
		"a declared SIZE over the limit gets 552 5.3.4 at MAIL": {
			limits: func(l *Limits) { l.MaxMessageBytes = 2000 },
			run: func(e *testEnv) string {
				return e.submission("alice-relay", alicePassword).cmd("MAIL FROM:<alice@example.com> SIZE=3000")
			},
			want: "552 5.3.4 ",
		},
		"a header section over its limit gets 552 5.3.4": {
			limits: func(l *Limits) { l.MaxHeaderBytes = 1000 },
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(strings.Repeat("X-Pad: 0123456789012345678901234567890123456789\r\n", 30) +
					msg("alice@example.com", "x@foreign.example", "hi"))
			},
			want: "552 5.3.4 ",
		},
		"the recipient past the limit gets 452 4.5.3": {
			limits: func(l *Limits) { l.MaxRecipients = 2 },
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<a@foreign.example>", "250 ")
				c.expect("RCPT TO:<b@foreign.example>", "250 ")
				return c.cmd("RCPT TO:<c@foreign.example>")
			},
			want: "452 4.5.3 ",
		},
		"a line over the line limit ends the session with 500 5.4.0": {
			limits: func(l *Limits) { l.MaxLineLength = 200 },
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				return c.cmd("NOOP " + strings.Repeat("x", 300))
			},
			want: "500 5.4.0 ",
		},
		"a message line over the line limit gets 554 5.6.0": {
			limits: func(l *Limits) { l.MaxLineLength = 200 },
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<x@foreign.example>", "250 ")
				return c.data(msg("alice@example.com", "x@foreign.example", "hi") + strings.Repeat("y", 300) + "\r\n")
			},
			want: "554 5.6.0 ",
		},
		"a quoted recipient hiding a second @ is refused": {
			run: func(e *testEnv) string {
				c := e.submission("alice-relay", alicePassword)
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				return c.cmd(`RCPT TO:<"x@foreign.example"@example.com>`)
			},
			want: "553 5.1.3 ",
		},
	}
}
