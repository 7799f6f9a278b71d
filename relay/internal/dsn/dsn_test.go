package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

type parsed struct {
	header     mail.Header
	human      string
	perMessage textproto.MIMEHeader
	recipients []textproto.MIMEHeader
	headers    string
}

// parse reads a report back with the standard library's MIME parsers.
func parse(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("report is not a message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	var p parsed
	p.header = msg.Header
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			if i != 3 {
				t.Fatalf("report has %d parts, want 3", i)
			}
			return p
		}
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		switch ct := part.Header.Get("Content-Type"); {
		case i == 0 && strings.HasPrefix(ct, "text/plain"):
			p.human = string(data)
		case i == 1 && ct == "message/delivery-status":
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(data, "\r\n"...))))
			if p.perMessage, err = tr.ReadMIMEHeader(); err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			for {
				h, err := tr.ReadMIMEHeader()
				if len(h) > 0 {
					p.recipients = append(p.recipients, h)
				}
				if err != nil {
					break
				}
			}
		case i == 2 && ct == "text/rfc822-headers":
			p.headers = string(data)
		default:
			t.Fatalf("part %d has type %q", i, ct)
		}
	}
}

func TestBuildBounce(t *testing.T) {
	date := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	raw, err := Build(Report{
		ReportingMTA: "relay.example.net",
		To:           "alice@a.example",
		QueueID:      "Q123",
		Arrival:      date.Add(-time.Hour),
		Date:         date,
		Recipients: []Recipient{
			{Address: "bob@b.example", Action: Failed, Status: "5.1.1", RemoteMTA: "mx.b.example",
				Reply: "550 5.1.1 no such user\r\nInjected: header", LastAttempt: date},
			{Address: "carol@null.example", Action: Failed, Status: "5.1.10", Reason: "domain does not accept mail (null MX)"},
		},
		Headers: []byte("Subject: hello\r\nMessage-ID: <m1@a.example>\r\n\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	checks := map[string]struct{ got, want string }{
		"the report goes to the original sender":           {p.header.Get("To"), "<alice@a.example>"},
		"the report says it is automatic":                  {p.header.Get("Auto-Submitted"), "auto-replied"},
		"the reporting MTA is named":                       {p.perMessage.Get("Reporting-MTA"), "dns; relay.example.net"},
		"the first recipient is named":                     {p.recipients[0].Get("Final-Recipient"), "rfc822; bob@b.example"},
		"the first recipient failed":                       {p.recipients[0].Get("Action"), "failed"},
		"the status is the remote enhanced code":           {p.recipients[0].Get("Status"), "5.1.1"},
		"the remote MTA is named":                          {p.recipients[0].Get("Remote-MTA"), "dns; mx.b.example"},
		"the remote reply is one line and injects nothing": {p.recipients[0].Get("Diagnostic-Code"), "smtp; 550 5.1.1 no such user Injected: header"},
		"a local failure has its own diagnostic type":      {p.recipients[1].Get("Diagnostic-Code"), "X-Postwarden; domain does not accept mail (null MX)"},
		"a local failure has no remote MTA":                {p.recipients[1].Get("Remote-MTA"), ""},
		"the original headers are attached":                {p.headers, "Subject: hello\r\nMessage-ID: <m1@a.example>\r\n"},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", name, c.got, c.want)
		}
	}
	if len(p.recipients) != 2 || p.recipients[0].Get("Injected") != "" {
		t.Errorf("recipient blocks = %v", p.recipients)
	}
	if !strings.Contains(p.human, "host mx.b.example said: 550 5.1.1 no such user") {
		t.Errorf("human part does not quote the reply:\n%s", p.human)
	}
}

func TestBuildDelay(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	raw, err := Build(Report{ReportingMTA: "relay", To: "a@a.example", Date: now, Recipients: []Recipient{
		{Address: "b@b.example", Action: Delayed, Status: "4.2.0", Reply: "451 4.2.0 busy", RetryUntil: now.Add(96 * time.Hour)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	if !strings.HasPrefix(p.header.Get("Subject"), "Delayed Mail") || p.recipients[0].Get("Action") != "delayed" ||
		p.recipients[0].Get("Will-Retry-Until") == "" {
		t.Fatalf("delay report: subject %q, recipient %v", p.header.Get("Subject"), p.recipients[0])
	}
}

func TestNoReportToTheNullSender(t *testing.T) {
	_, err := Build(Report{To: "", Recipients: []Recipient{{Address: "b@b.example", Action: Failed, Status: "5.0.0"}}})
	if !errors.Is(err, ErrNullSender) {
		t.Fatalf("Build to the null sender: %v", err)
	}
}

func TestHeaderSection(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"the body is left out":               {"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n"},
		"bare LF becomes CRLF":               {"A: 1\nB: 2\n\nbody", "A: 1\r\nB: 2\r\n"},
		"a message of headers only is whole": {"A: 1\r\n", "A: 1\r\n"},
		"folded lines stay folded":           {"A: 1\r\n 2\r\n\r\n", "A: 1\r\n 2\r\n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := HeaderSection(strings.NewReader(tc.in))
			if err != nil || string(got) != tc.want {
				t.Fatalf("HeaderSection = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
