package dev

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one mail the sink received.
type Message struct {
	From string
	To   []string
	// Data is the message as received, byte for byte; Path is its .eml file.
	Data []byte
	Path string
	// TLS says whether the session used STARTTLS, and with which version.
	TLS        bool
	TLSVersion uint16
	// Server is the local address the mail arrived on.
	Server string
}

// Sink is a catch-all destination SMTP server: it accepts every message (unless told to
// refuse some recipients), prints a summary and its headers, and writes each as one .eml
// file.
type Sink struct {
	srv *smtp.Server
	ln  net.Listener
	dir string
	out io.Writer

	mu      sync.Mutex
	msgs    []Message
	seq     int
	changed chan struct{}
	refuse  func(rcpt string) bool
	rcpts   map[string]int
}

// SetRefuse makes the sink answer RCPT TO with 550 5.1.1 for the addresses refuse
// holds, as a domain's own server does for a mailbox it does not have; nil accepts all.
func (s *Sink) SetRefuse(refuse func(rcpt string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = refuse
}

// RcptCount is how many times an address was given in RCPT TO, refused or not:
// verification callouts ask with RCPT and never send DATA.
func (s *Sink) RcptCount(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts[strings.ToLower(addr)]
}

// rcpt counts a recipient and says whether it is refused.
func (s *Sink) rcpt(addr string) (refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rcpts == nil {
		s.rcpts = map[string]int{}
	}
	s.rcpts[strings.ToLower(addr)]++
	return s.refuse != nil && s.refuse(addr)
}

// StartSink listens on addr and serves until Close. tlsConfig, when set, offers STARTTLS.
func StartSink(addr, dir string, out io.Writer, tlsConfig *tls.Config) (*Sink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating sink folder: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the sink on %s: %w", addr, err)
	}
	if out == nil {
		out = io.Discard
	}
	s := &Sink{ln: ln, dir: dir, out: out, changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s, conn: c}, nil
	}))
	s.srv.Domain = "sink.localhost"
	s.srv.TLSConfig = tlsConfig
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 1000
	// Clients that hang up mid-handshake (a relay refusing a certificate) are not news.
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Dir is the folder of the .eml files.
func (s *Sink) Dir() string { return s.dir }

// Close stops the server.
func (s *Sink) Close() error { return s.srv.Close() }

// Messages returns what arrived so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait returns the first message for which match holds, waiting for it until ctx ends.
func (s *Sink) Wait(ctx context.Context, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		msgs, changed := s.msgs, s.changed
		s.mu.Unlock()
		for _, m := range msgs {
			if match(m) {
				return m, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("waiting for a message at %s: %w", s.Addr(), ctx.Err())
		}
	}
}

func (s *Sink) store(m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	name := fmt.Sprintf("%s-%04d.eml", time.Now().UTC().Format("20060102T150405.000"), s.seq)
	m.Path = filepath.Join(s.dir, name)
	if err := os.WriteFile(m.Path, m.Data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", m.Path, err)
	}
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})

	tlsText := "no TLS"
	if m.TLS {
		tlsText = tls.VersionName(m.TLSVersion)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sink: mail from <%s> to <%s>, %d bytes, %s, saved as %s\n",
		m.From, strings.Join(m.To, ">, <"), len(m.Data), tlsText, m.Path)
	for _, line := range headerLines(m.Data) {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	_, _ = io.WriteString(s.out, b.String())
	return nil
}

// headerLines returns the header section of a message, one line each.
func headerLines(data []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		lines = append(lines, line)
	}
	return lines
}

type sinkSession struct {
	sink *Sink
	conn *smtp.Conn
	from string
	to   []string
}

func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }
func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if x.sink.rcpt(to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox here"}
	}
	x.to = append(x.to, to)
	return nil
}
func (x *sinkSession) Reset()        { x.from, x.to = "", nil }
func (x *sinkSession) Logout() error { return nil }

func (x *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: x.from, To: x.to, Data: data, Server: x.conn.Conn().LocalAddr().String()}
	if state, ok := x.conn.TLSConnectionState(); ok {
		m.TLS, m.TLSVersion = true, state.Version
	}
	if err := x.sink.store(m); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store the message"}
	}
	return nil
}
