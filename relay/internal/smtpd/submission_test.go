package smtpd

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSubmissionQueuesWithEnvelopeAndReceivedHeader(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.dial()
	caps := c.ehlo()
	if slices.ContainsFunc(caps, func(s string) bool { return strings.HasPrefix(s, "AUTH") }) {
		t.Errorf("AUTH advertised before STARTTLS: %q", caps)
	}
	for _, want := range []string{"STARTTLS", "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 26214400"} {
		if !slices.Contains(caps, want) {
			t.Errorf("EHLO before TLS lacks %q: %q", want, caps)
		}
	}
	c.starttls()
	caps = c.ehlo()
	if !slices.Contains(caps, "AUTH PLAIN LOGIN") || slices.Contains(caps, "STARTTLS") {
		t.Errorf("EHLO after TLS = %q, want AUTH PLAIN LOGIN and no STARTTLS", caps)
	}
	c.auth("alice-relay", alicePassword, "235 2.0.0")
	c.expect("MAIL FROM:<Alice@Example.com> SIZE=100", "250 ")
	c.expect("RCPT TO:<Someone@Foreign.Example>", "250 ")
	c.expect("RCPT TO:<other@foreign.example>", "250 ")
	id := queueID(t, c.data(msg("Alice <alice@example.com>", "someone@foreign.example", "hi")))
	c.expect("QUIT", "221 ")

	env, body := e.message(id)
	if env.Sender != "Alice@example.com" || !slices.Equal(env.Recipients, []string{"Someone@foreign.example", "other@foreign.example"}) ||
		env.AuthUser != "alice-relay" || env.ClientIP != "127.0.0.1" || env.Direction != "outbound" {
		t.Errorf("envelope = %+v", env)
	}
	header, _, _ := strings.Cut(body, "\r\n\r\n")
	for _, want := range []string{
		"Received: from client.test.example ([127.0.0.1])",
		"(authenticated user alice-relay)",
		"by " + testHostname + " (Postwarden) with ESMTPSA id ",
		"(version=TLS1.3 cipher=TLS_",
		"From: Alice <alice@example.com>",
	} {
		if !strings.Contains(header, want) {
			t.Errorf("queued header lacks %q:\n%s", want, header)
		}
	}
	if !strings.HasPrefix(body, "Received: ") || !strings.HasSuffix(body, "\r\nHello.\r\n") {
		t.Errorf("queued body is not Received: + message:\n%q", body)
	}

	waitFor(t, "the tracking line", func() bool { return len(e.logs.records("message")) == 1 })
	rec := e.logs.records("message")[0]
	for k, want := range map[string]any{
		"sasl_user": "alice-relay", "sender": "Alice@example.com", "client_ip": "127.0.0.1",
		"queue_id": id, "outcome": "accepted", "tls_version": "TLS 1.3", "direction": "outbound",
	} {
		if rec[k] != want {
			t.Errorf("tracking line %s = %v, want %v (line %v)", k, rec[k], want, rec)
		}
	}
	if rec["session"] == "" || rec["size"] == float64(0) || rec["tls_cipher"] == "" {
		t.Errorf("tracking line lacks session, size or cipher: %v", rec)
	}
	if strings.Contains(e.logs.String(), alicePassword) {
		t.Error("the password appears in the log")
	}
	if got := testutil.ToFloat64(e.metrics.MessagesAccepted.WithLabelValues("outbound")); got != 1 {
		t.Errorf("messages accepted = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.metrics.AuthSuccesses.WithLabelValues("PLAIN")); got != 1 {
		t.Errorf("auth successes = %v, want 1", got)
	}
}

func TestSubmissionLoginMechanism(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.dial()
	c.ehlo()
	c.starttls()
	c.ehlo()
	b64 := base64.StdEncoding.EncodeToString
	c.expect("AUTH LOGIN", "334 "+b64([]byte("Username:")))
	c.expect(b64([]byte("bob-relay")), "334 "+b64([]byte("Password:")))
	c.expect(b64([]byte(bobPassword)), "235 ")
	c.expect("MAIL FROM:<noreply@example.com>", "250 ")
}

// TestSubmissionRefusals runs each scenario on a fresh connection and checks the exact
// reply, and that the spool stayed empty.
func TestSubmissionRefusals(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := map[string]struct {
		limits func(*Limits)
		run    func(e *testEnv) string
		want   string
	}{
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
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var opts []envOption
			if tc.limits != nil {
				opts = append(opts, withLimits(tc.limits))
			}
			e := newEnv(t, Submission, opts...)
			got := tc.run(e)
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want %q...", got, tc.want)
			}
			if n := e.spool.Len(); n != 0 {
				t.Fatalf("spool holds %d messages after a refusal", n)
			}
		})
	}
}

func TestSubmissionAcceptsOwnAddressesInAnyCase(t *testing.T) {
	e := newEnv(t, Submission)
	for _, sender := range []string{"ALICE@EXAMPLE.COM", "billing@example.com", "al@example.com"} {
		c := e.submission("alice-relay", alicePassword)
		c.expect("MAIL FROM:<"+sender+">", "250 ")
		c.expect("RCPT TO:<x@foreign.example>", "250 ")
		queueID(t, c.data(msg(sender, "x@foreign.example", "hi")))
	}
}
