package smtpd

import "encoding/base64"

// authRefusals are the TestSubmissionRefusals cases of authentication: AUTH only after
// STARTTLS, the credentials, and the PLAIN and LOGIN exchanges.
func authRefusals() map[string]refusalCase {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return map[string]refusalCase{
		"AUTH before STARTTLS gets 530 5.7.0": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("", "alice-relay", alicePassword))
			},
			want: "530 5.7.0 ",
		},
		"MAIL before STARTTLS and AUTH gets 530 5.7.0 Authentication required": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				return c.cmd("MAIL FROM:<alice@example.com>")
			},
			want: "530 5.7.0 Authentication required",
		},
		"MAIL after STARTTLS but before AUTH gets 530 5.7.0": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("MAIL FROM:<alice@example.com>")
			},
			want: "530 5.7.0 Authentication required",
		},
		"a wrong password gets 535 5.7.8": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("", "alice-relay", "wrong"))
			},
			want: "535 5.7.8 ",
		},
		"an unknown user gets 535 5.7.8": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("", "nobody", alicePassword))
			},
			want: "535 5.7.8 ",
		},
		"a username in another case is another username": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("", "Alice-Relay", alicePassword))
			},
			want: "535 5.7.8 ",
		},
		"an authzid other than the username is refused": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("bob-relay", "alice-relay", alicePassword))
			},
			want: "535 5.7.8 Authorization identity",
		},
		"an authzid equal to the username is accepted": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + plain("alice-relay", "alice-relay", alicePassword))
			},
			want: "235 2.0.0 ",
		},
		"a LOGIN username with a NUL is refused, not truncated": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				c.expect("AUTH LOGIN "+b64("alice-relay\x00junk"), "334 ")
				return c.cmd(b64(alicePassword))
			},
			want: "501 5.5.2 ",
		},
		"a LOGIN username with CR LF is refused": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				c.expect("AUTH LOGIN "+b64("alice-relay\r\n"), "334 ")
				return c.cmd(b64(alicePassword))
			},
			want: "501 5.5.2 ",
		},
		"a PLAIN response with extra NULs is refused": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH PLAIN " + b64("\x00alice-relay\x00x\x00"+alicePassword))
			},
			want: "501 5.5.2 ",
		},
		"an unknown mechanism is refused with 504 5.5.4": {
			run: func(e *testEnv) string {
				c := e.dial()
				c.ehlo()
				c.starttls()
				c.ehlo()
				return c.cmd("AUTH CRAM-MD5")
			},
			want: "504 5.5.4 ",
		},
	}
}
