// Package dsn builds delivery status notifications (RFC 3464): the bounce or delay
// notice sent to a message's envelope sender, as a multipart/report with a readable
// explanation, a message/delivery-status part with one block per recipient, and the
// original message's header section (text/rfc822-headers).
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
)

// Action is the DSN Action of a recipient.
type Action string

// The actions a relay reports. A relay never reports "delivered" or "relayed" unasked.
const (
	Failed  Action = "failed"
	Delayed Action = "delayed"
)

// Recipient is one recipient's block in the report.
type Recipient struct {
	Address string
	Action  Action
	// Status is the RFC 3463 enhanced code, such as "5.1.1".
	Status string
	// RemoteMTA is the host that gave Reply; empty when none was reached.
	RemoteMTA string
	// Reply is the remote SMTP reply, such as "550 5.1.1 no such user". Empty when the
	// failure happened here (DNS, TLS, expiry); Reason then explains it.
	Reply  string
	Reason string
	// LastAttempt is when delivery was last tried; zero omits the field.
	LastAttempt time.Time
	// RetryUntil is when a delayed message will be given up; Delayed only.
	RetryUntil time.Time
}

// Report is what a notification says.
type Report struct {
	// ReportingMTA is this relay's host name.
	ReportingMTA string
	// To is the original envelope sender, who receives the report.
	To string
	// QueueID names the original message in the relay's logs.
	QueueID string
	// Arrival is when the relay accepted the original message.
	Arrival time.Time
	// Date is when the report is written.
	Date       time.Time
	Recipients []Recipient
	// Headers is the original message's header section, as HeaderSection returns it.
	Headers []byte
}

// ErrNullSender is returned for a report to the null sender: a notification about a
// notification would risk a loop (RFC 5321 4.5.5, RFC 3464 2).
var ErrNullSender = errors.New("dsn: no notification is sent to the null sender")

// MaxHeaderBytes bounds the original header section copied into a report.
const MaxHeaderBytes = 64 << 10

// HeaderSection reads the header section of a raw message (up to and including the
// empty line), at most MaxHeaderBytes of it, with CRLF line endings.
func HeaderSection(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, MaxHeaderBytes))
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" && (line != "" || err != nil) {
			break
		}
		out.WriteString(trimmed)
		out.WriteString("\r\n")
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading original headers: %w", err)
		}
	}
	return out.Bytes(), nil
}

// Build writes the notification as a complete RFC 5322 message with CRLF line endings.
func Build(r Report) ([]byte, error) {
	if r.To == "" {
		return nil, ErrNullSender
	}
	if len(r.Recipients) == 0 {
		return nil, errors.New("dsn: a report needs at least one recipient")
	}
	delay := true
	for _, rc := range r.Recipients {
		if rc.Action != Delayed {
			delay = false
		}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)

	var hdr bytes.Buffer
	subject := "Undelivered Mail Returned to Sender"
	if delay {
		subject = "Delayed Mail (still being retried)"
	}
	fmt.Fprintf(&hdr, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", clean(r.ReportingMTA))
	fmt.Fprintf(&hdr, "To: <%s>\r\n", clean(r.To))
	fmt.Fprintf(&hdr, "Subject: %s\r\n", subject)
	fmt.Fprintf(&hdr, "Date: %s\r\n", r.Date.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&hdr, "Message-ID: <%s.%d.dsn@%s>\r\n", clean(r.QueueID), r.Date.UnixNano(), clean(r.ReportingMTA))
	hdr.WriteString("Auto-Submitted: auto-replied\r\n")
	hdr.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&hdr, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())

	// Human-readable part.
	pw, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
		"Content-Description":       {"Notification"},
	})
	if err != nil {
		return nil, fmt.Errorf("dsn: writing notification part: %w", err)
	}
	qp := quotedprintable.NewWriter(pw)
	writeHuman(qp, r, delay)
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("dsn: encoding notification part: %w", err)
	}

	// Machine-readable part.
	pw, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"message/delivery-status"},
		"Content-Description": {"Delivery report"},
	})
	if err != nil {
		return nil, fmt.Errorf("dsn: writing status part: %w", err)
	}
	writeStatus(pw, r)

	// The original headers.
	pw, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/rfc822-headers"},
		"Content-Description": {"Undelivered Message Headers"},
	})
	if err != nil {
		return nil, fmt.Errorf("dsn: writing headers part: %w", err)
	}
	headers := bytes.TrimRight(r.Headers, "\r\n")
	if len(headers) > 0 {
		headers = append(headers[:len(headers):len(headers)], "\r\n"...)
	}
	if _, err := pw.Write(headers); err != nil {
		return nil, fmt.Errorf("dsn: writing headers part: %w", err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("dsn: closing report: %w", err)
	}
	return append(hdr.Bytes(), body.Bytes()...), nil
}

func writeHuman(w io.Writer, r Report, delay bool) {
	fmt.Fprintf(w, "This is the mail system at host %s.\r\n\r\n", clean(r.ReportingMTA))
	if delay {
		w.Write([]byte("Your message could not be delivered yet to the recipients below.\r\n" +
			"The mail system will keep trying; you do not need to send it again.\r\n\r\n"))
	} else {
		w.Write([]byte("Your message could not be delivered to the recipients below.\r\n" +
			"This is a permanent error; the mail system has given up.\r\n\r\n"))
	}
	for _, rc := range r.Recipients {
		why := rc.Reply
		if why == "" {
			why = rc.Reason
		}
		if rc.RemoteMTA != "" && rc.Reply != "" {
			why = fmt.Sprintf("host %s said: %s", rc.RemoteMTA, rc.Reply)
		}
		fmt.Fprintf(w, "<%s>: %s\r\n", clean(rc.Address), clean(why))
		if delay && !rc.RetryUntil.IsZero() {
			fmt.Fprintf(w, "    (will retry until %s)\r\n", rc.RetryUntil.UTC().Format(time.RFC1123Z))
		}
	}
}

func writeStatus(w io.Writer, r Report) {
	fmt.Fprintf(w, "Reporting-MTA: dns; %s\r\n", clean(r.ReportingMTA))
	if r.QueueID != "" {
		fmt.Fprintf(w, "X-Postwarden-Queue-ID: %s\r\n", clean(r.QueueID))
	}
	if !r.Arrival.IsZero() {
		fmt.Fprintf(w, "Arrival-Date: %s\r\n", r.Arrival.UTC().Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(w, "\r\nFinal-Recipient: rfc822; %s\r\n", clean(rc.Address))
		fmt.Fprintf(w, "Action: %s\r\n", rc.Action)
		fmt.Fprintf(w, "Status: %s\r\n", clean(rc.Status))
		if rc.RemoteMTA != "" {
			fmt.Fprintf(w, "Remote-MTA: dns; %s\r\n", clean(rc.RemoteMTA))
		}
		switch {
		case rc.Reply != "":
			fmt.Fprintf(w, "Diagnostic-Code: smtp; %s\r\n", clean(rc.Reply))
		case rc.Reason != "":
			fmt.Fprintf(w, "Diagnostic-Code: X-Postwarden; %s\r\n", clean(rc.Reason))
		}
		if !rc.LastAttempt.IsZero() {
			fmt.Fprintf(w, "Last-Attempt-Date: %s\r\n", rc.LastAttempt.UTC().Format(time.RFC1123Z))
		}
		if rc.Action == Delayed && !rc.RetryUntil.IsZero() {
			fmt.Fprintf(w, "Will-Retry-Until: %s\r\n", rc.RetryUntil.UTC().Format(time.RFC1123Z))
		}
	}
}

// clean makes a value safe for a header field: one line of printable ASCII, so a remote
// reply cannot inject fields or break the report.
func clean(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			if len(b) > 0 && b[len(b)-1] != ' ' {
				b = append(b, ' ')
			}
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	const maxLen = 900 // well under the 998-octet line limit with the field name
	if len(b) > maxLen {
		b = b[:maxLen]
	}
	return strings.TrimSpace(string(b))
}
