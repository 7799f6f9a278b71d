package smtpd

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// The Received: header names the message by the id it is queued under, which is also
// the id of the 250 reply and of the accepted tracking line, in Postfix's shape.
func TestReceivedHeaderNamesTheQueueID(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.submission("alice-relay", alicePassword)
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	id := queueID(t, c.data(msg("alice@example.com", "x@foreign.example", "hi")))
	c.expect("QUIT", "221 ")

	_, body := e.message(id) // the spool has it under the id of the reply
	want := regexp.MustCompile(`^Received: from client\.test\.example \(\[127\.0\.0\.1\]\)\r\n` +
		`\t\(version=TLS1\.3 cipher=TLS_[A-Z0-9_]+\)\r\n` +
		`\t\(authenticated user alice-relay\)\r\n` +
		`\tby relay\.test\.example \(Postwarden\) with ESMTPSA id ([0-9A-Z]{18})\r\n` +
		`\tfor <x@foreign\.example>; ([^\r\n]+)\r\n`)
	m := want.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the Received: header is not in the expected form:\n%s", body)
	}
	if m[1] != id {
		t.Errorf("Received: names id %s, the 250 reply %s", m[1], id)
	}
	if _, err := time.Parse(time.RFC1123Z, m[2]); err != nil {
		t.Errorf("Received: date %q: %v", m[2], err)
	}
	waitFor(t, "the tracking line", func() bool { return len(e.logs.Records("message")) == 1 })
	if got := e.logs.Records("message")[0]["queue_id"]; got != id {
		t.Errorf("the accepted line's queue_id is %v, the 250 reply's %s", got, id)
	}
}

// With several recipients there is no "for" clause, and the date follows the id.
func TestReceivedHeaderWithSeveralRecipients(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<bob@example.com>", "250 ")
	id := queueID(t, c.data(msg("x@foreign.example", "alice@example.com", "hi")))
	_, body := e.message(id)
	want := "\tby relay.test.example (Postwarden) with ESMTP id " + id + ";\r\n\t"
	if !strings.Contains(body, want) || strings.Contains(body, "\tfor <") {
		t.Errorf("queued message lacks %q or has a for clause:\n%s", want, body)
	}
}

// Every transaction ends in exactly one tracking line, whatever its end.
func TestTrackingLinesOfEveryEnd(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	c.ehlo()
	// A sending server relays for its domain: the line names the domain that let it.
	c.expect("MAIL FROM:<app@relay.example>", "250 ")
	c.expect("RCPT TO:<y@foreign.example>", "250 ")
	c.expect("RCPT TO:<y%other.example@foreign.example>", "553 ")
	id := queueID(t, c.data(msg("app@relay.example", "y@foreign.example", "hi")))
	// The From: header is not one the sending server may use: refused at DATA.
	c.expect("MAIL FROM:<app@relay.example>", "250 ")
	c.expect("RCPT TO:<y@foreign.example>", "250 ")
	c.data(msg("boss@example.com", "y@foreign.example", "hi"))
	// Reset before DATA.
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.expect("RSET", "250 ")
	c.expect("QUIT", "221 ")

	waitFor(t, "three tracking lines", func() bool { return len(e.logs.Records("message")) == 3 })
	recs := e.logs.Records("message")
	wants := []map[string]any{
		{"event": "accepted", "queue_id": id, "sending_server": "relay.example", "direction": "outbound",
			"rejected_recipients": float64(1), "listener": "inbound", "tls_version": "none", "reason": ""},
		{"event": "rejected", "queue_id": "", "sending_server": "relay.example", "reason": "from_not_allowed",
			"message_id": "<1@client.test.example>"},
		{"event": "abandoned", "queue_id": "", "sending_server": "", "direction": "inbound", "sender": "x@foreign.example",
			"message_id": "", "size": float64(0)},
	}
	for i, want := range wants {
		for k, v := range want {
			if recs[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (line %v)", i, k, recs[i][k], v, recs[i])
			}
		}
	}
}

// Values the client chooses are escaped by the JSON handler: a Message-ID built to look
// like more fields stays one string value.
func TestTrackingLineKeepsClientValuesInTheirField(t *testing.T) {
	e := newEnv(t, Inbound)
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	hostile := `<a"},"sasl_user":"root","x":{"\@evil>`
	queueID(t, c.data("From: x@foreign.example\r\nMessage-ID: "+hostile+"\r\n\r\nhi\r\n"))
	waitFor(t, "the tracking line", func() bool { return len(e.logs.Records("message")) == 1 })
	rec := e.logs.Records("message")[0]
	if rec["message_id"] != hostile || rec["sasl_user"] != "" || rec["x"] != nil {
		t.Errorf("the Message-ID leaked out of its field: %v", rec)
	}
}

func TestMessageIDOf(t *testing.T) {
	long := "<" + strings.Repeat("x", 600) + "@example>"
	cases := map[string]struct{ header, want string }{
		"the field is found in any case":        {"From: a@b\r\nmessage-id: <1@x>\r\n\r\n", "<1@x>"},
		"a folded field is unfolded":            {"Message-ID:\r\n <1@x>\r\nFrom: a@b\r\n\r\n", "<1@x>"},
		"the first of two counts":               {"Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\n", "<1@x>"},
		"a space before the colon is read":      {"Message-ID : <1@x>\r\n\r\n", "<1@x>"},
		"none gives empty":                      {"From: a@b\r\n\r\n", ""},
		"the body is not searched":              {"From: a@b\r\n\r\nMessage-ID: <1@x>\r\n", ""},
		"a header without body ends at the end": {"Message-ID: <1@x>\r\n", "<1@x>"},
		"a huge value is cut":                   {"Message-ID: " + long + "\r\n\r\n", long[:maxMessageIDLen]},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := messageIDOf([]byte(tc.header)); got != tc.want {
				t.Errorf("messageIDOf(%q) = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}
