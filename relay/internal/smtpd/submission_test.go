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

	waitFor(t, "the tracking line", func() bool { return len(e.logs.Records("message")) == 1 })
	rec := e.logs.Records("message")[0]
	for k, want := range map[string]any{
		"event": "accepted", "listener": "submission", "sasl_user": "alice-relay", "sending_server": "",
		"sender": "Alice@example.com", "client_ip": "127.0.0.1", "queue_id": id, "tls_version": "TLS1.3",
		"direction": "outbound", "message_id": "<1@client.test.example>",
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
	cases := map[string]refusalCase{}
	for _, part := range []map[string]refusalCase{authRefusals(), senderRefusals(), messageRefusals()} {
		for name, tc := range part {
			if _, dup := cases[name]; dup {
				t.Fatalf("refusal case %q is defined twice", name)
			}
			cases[name] = tc
		}
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

// refusalCase is one scenario of TestSubmissionRefusals: run drives a fresh connection
// to the reply it returns, which must start with want. The cases are grouped by concern
// in authRefusals, senderRefusals and messageRefusals.
type refusalCase struct {
	limits func(*Limits)
	run    func(e *testEnv) string
	want   string
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
