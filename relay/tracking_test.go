package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/test/testkit"
)

// trackingRun is a relay's real log after two messages, and what the test knows of them.
type trackingRun struct {
	log     []byte
	records []map[string]any // its tracking lines
	sink    *testkit.Server
	// a was submitted by alice-relay to ok@ (delivered) and later@ (deferred, so a delay
	// notice went out); b came on port 25 from a sending server, to gone@ (bounced).
	a, b       string // queue ids from the 250 replies
	messageIDA string
}

const (
	rcptOK    = "ok@elsewhere.example"
	rcptLater = "later@elsewhere.example"
	rcptGone  = "gone@elsewhere.example"
)

func runTracking(t *testing.T) *trackingRun {
	t.Helper()
	a, b := creds(t)
	s := newSnapshot(t, certEntry, a, b)
	s.Domains[1].SendingServers = []string{"127.0.0.1/32"} // bob's example.net relays by IP too
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	run := &trackingRun{sink: testkit.Start(t), messageIDA: "<20241105101502.4711@laptop.example.com>"}
	run.sink.RejectRcpt(rcptLater, testkit.Reply(450, "4.2.1", "mailbox busy, try later"))
	run.sink.RejectRcpt(rcptGone, testkit.Reply(550, "5.1.1", "no such user"))
	f := startFileRelay(t, s, deliverVia(t, run.sink), func(c *Config) {
		c.Delivery.Retry = delivery.Retry{DelayNotice: time.Nanosecond} // a delay notice at the first deferral
	})
	waitFor(t, "readiness", f.Ready)

	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	run.a = sendTracked(t, cl, "sender@"+a.domain, []string{rcptOK, rcptLater}, run.messageIDA)
	cl, err = smtp.Dial(f.InboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Hello("mta.example.net"); err != nil {
		t.Fatal(err)
	}
	run.b = sendTracked(t, cl, "app@"+b.domain, []string{rcptGone}, "<b@mta.example.net>")

	// Two notifications, and three deliveries: ok@, then each notification.
	waitFor(t, "the tracking lines of both messages and their notifications", func() bool {
		n := map[any]int{}
		for _, rec := range f.logs.Records("message") {
			n[rec["event"]]++
		}
		return n["delivered"] == 3 && n["deferred"] == 1 && n["bounced"] == 1 && n["dsn_sent"] == 2
	})
	run.log = []byte(f.logs.String())
	run.records = f.logs.Records("message")
	return run
}

// sendTracked sends one message over cl and returns the queue id of the 250 reply.
func sendTracked(t *testing.T, cl *smtp.Client, from string, to []string, messageID string) string {
	t.Helper()
	defer cl.Close()
	if err := cl.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range to {
		if err := cl.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nMessage-ID: %s\r\nSubject: tracking\r\n\r\nhello\r\n", from, to[0], messageID)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	_, id, ok := strings.Cut(resp.StatusText, "OK: queued as ")
	if !ok || len(id) != 18 {
		t.Fatalf("250 reply %q names no queue id", resp.StatusText)
	}
	if err := cl.Quit(); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestTrackingDocsExamples runs every jq example of docs/operating.md, exactly as
// written there, on a relay's real log. jq is required: hack/test-deps.sh installs it,
// and without it this test fails rather than skip.
func TestTrackingDocsExamples(t *testing.T) {
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Fatalf("jq is not installed (hack/test-deps.sh installs it): %v", err)
	}
	docs := readTrackingDocs(t)
	run := runTracking(t)
	args := map[string]string{"id": run.a, "mid": run.messageIDA, "sender": "sender@example.com", "user": "alice-relay"}
	checks := trackingChecks(run)
	if got, want := slices.Sorted(maps.Keys(docs.examples)), slices.Sorted(maps.Keys(checks)); !slices.Equal(got, want) {
		t.Fatalf("the docs have examples %v; the test checks %v", got, want)
	}
	for name, example := range docs.examples {
		t.Run(name, func(t *testing.T) {
			argv := slices.Clone(example)
			for i := 0; i+2 < len(argv); i++ {
				if argv[i] == "--arg" {
					v, ok := args[argv[i+1]]
					if !ok {
						t.Fatalf("the test has no value for --arg %s", argv[i+1])
					}
					argv[i+2] = v
				}
			}
			cmd := exec.Command(jq, argv...)
			cmd.Stdin = bytes.NewReader(run.log)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("jq %q: %v\n%s", argv, err, stderr.String())
			}
			if err := checks[name](string(out)); err != nil {
				t.Errorf("jq %q: %v; output:\n%s", argv, err, out)
			}
		})
	}
}

// The same queue id is in the 250 reply, the Received: header and the tracking lines,
// and every tracking line has exactly the fields the docs list for its event.
func TestTrackingLinesOfARealRelay(t *testing.T) {
	docs := readTrackingDocs(t)
	run := runTracking(t)
	// jq stops at the first line that is not JSON.
	for line := range bytes.Lines(run.log) {
		if !json.Valid(line) {
			t.Errorf("a log line is not JSON: %s", line)
		}
	}
	var accepted map[string]any
	for _, rec := range run.records {
		event := rec["event"].(string)
		keys := slices.Sorted(maps.Keys(rec))
		if rec["component"] == "delivery" { // delivery's logger adds it to all its lines
			keys = slices.DeleteFunc(keys, func(k string) bool { return k == "component" })
		}
		if !slices.Equal(keys, docs.fields[event]) {
			t.Errorf("a %s line has fields %v, the docs list %v", event, keys, docs.fields[event])
		}
		if event == "accepted" && rec["message_id"] == run.messageIDA {
			accepted = rec
		}
	}
	if accepted == nil || accepted["queue_id"] != run.a || accepted["sasl_user"] != "alice-relay" ||
		accepted["tls_version"] != "TLS1.3" {
		t.Errorf("accepted line of %s: %v", run.a, accepted)
	}
	var got []testkit.Message
	for _, m := range run.sink.Messages() {
		if m.From != "" {
			got = append(got, m)
		}
	}
	if len(got) != 1 || !slices.Equal(got[0].To, []string{rcptOK}) {
		t.Fatalf("the smarthost got %d messages with a sender, want the one for %s", len(got), rcptOK)
	}
	// Two recipients: no "for" clause, so the date follows the id.
	if !bytes.HasPrefix(got[0].Data, []byte("Received: ")) ||
		!bytes.Contains(got[0].Data, []byte("(Postwarden) with ESMTPSA id "+run.a+";\r\n\t")) {
		t.Errorf("the delivered message does not name %s in its Received: header:\n%s", run.a, got[0].Data)
	}
	// b's bounce quotes b's header, whose one recipient is in Postfix's "for" clause.
	want := regexp.MustCompile(`\(Postwarden\) with ESMTP id ` + run.b + `\r\n\tfor <` + rcptGone + `>; \w{3}, `)
	var bounced bool
	for _, m := range run.sink.Messages() {
		bounced = bounced || (m.From == "" && want.Match(m.Data))
	}
	if !bounced {
		t.Errorf("no bounce quotes a Received: header naming %s", run.b)
	}
}
