// Package testkit provides a fake downstream SMTP server and a throw-away PKI for
// tests. The server is go-smtp's, listening on 127.0.0.1:0; it records every message it
// accepts and can be told to offer STARTTLS with a given certificate, to fail the TLS
// handshake, or to answer with an injected reply at connect, MAIL, RCPT (per recipient)
// or DATA.
package testkit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Stage is the point of an SMTP session where a reply can be injected.
type Stage int

// Stages at which Inject can fail a session.
const (
	StageConnect Stage = iota // the greeting: the server answers and closes
	StageMail                 // MAIL FROM
	StageRcpt                 // every RCPT TO (see RejectRcpt for one recipient)
	StageData                 // the reply after the final dot
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	// TLS is the session's TLS state; nil for a plaintext session.
	TLS *tls.ConnectionState
}

// Reply builds an SMTP reply such as Reply(451, "4.3.0", "try later").
func Reply(code int, enhanced, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text, EnhancedCode: smtp.NoEnhancedCode}
	var a, b, c int
	if _, err := fmt.Sscanf(enhanced, "%d.%d.%d", &a, &b, &c); err == nil {
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
	}
	return e
}

// Option configures a Server.
type Option func(*Server)

// WithCertificate makes the server offer STARTTLS with cert.
func WithCertificate(cert tls.Certificate) Option {
	return func(s *Server) {
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
}

// WithHandshakeFailure makes the server offer STARTTLS and then fail every handshake.
func WithHandshakeFailure() Option {
	return func(s *Server) {
		s.srv.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("handshake refused by test server")
		}}
	}
}

// WithDiscard makes the server keep envelopes but drop message bodies, for benchmarks
// that send more than memory should hold.
func WithDiscard() Option { return func(s *Server) { s.discard = true } }

// WithDomain sets the name the server gives in its greeting and EHLO reply.
func WithDomain(name string) Option { return func(s *Server) { s.srv.Domain = name } }

type injection struct {
	reply *smtp.SMTPError
	times int // remaining failures; negative means always
}

// Server is a running fake SMTP server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the listening address, 127.0.0.1:port.
	Addr string
	// Port is the listening port.
	Port int

	srv     *smtp.Server
	ln      net.Listener
	discard bool

	mu          sync.Mutex
	messages    []Message
	inject      map[Stage]*injection
	rejectRcpt  map[string]*smtp.SMTPError
	rcptCount   map[string]int
	connections int
	changed     chan struct{} // closed and replaced whenever a message arrives
	hold        chan struct{} // while non-nil, DATA waits until it is closed
	held        int           // sessions waiting in DATA
}

// Start starts a server that is closed when the test ends. Without options it does not
// offer STARTTLS.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		inject:     make(map[Stage]*injection),
		rejectRcpt: make(map[string]*smtp.SMTPError),
		rcptCount:  make(map[string]int),
		changed:    make(chan struct{}),
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "mx.testkit.invalid"
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 1000
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: listening: %v", err)
	}
	s.ln = &gate{Listener: ln, s: s}
	s.Addr = ln.Addr().String()
	s.Port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(s.ln)
	}()
	t.Cleanup(func() {
		// Close the listener too: if Serve has not registered it yet, srv.Close would
		// not see it, and Serve would then wait for connections forever.
		_ = s.ln.Close()
		_ = s.srv.Close()
		<-done
	})
	return s
}

// Inject makes the next times sessions reaching stage get reply instead of success;
// times < 0 means every session from now on, and a nil reply removes the injection.
func (s *Server) Inject(stage Stage, reply *smtp.SMTPError, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == nil || times == 0 {
		delete(s.inject, stage)
		return
	}
	s.inject[stage] = &injection{reply: reply, times: times}
}

// RejectRcpt makes every RCPT TO for addr get reply; a nil reply accepts it again.
func (s *Server) RejectRcpt(addr string, reply *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == nil {
		delete(s.rejectRcpt, strings.ToLower(addr))
		return
	}
	s.rejectRcpt[strings.ToLower(addr)] = reply
}

// Messages returns a copy of the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// RcptCount returns how many RCPT TO commands named addr (in any case), whatever
// their reply.
func (s *Server) RcptCount(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcptCount[strings.ToLower(addr)]
}

// Connections returns how many TCP connections the server has accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// WaitMessages waits until at least n messages have arrived and returns them; it fails
// the test after timeout.
func (s *Server) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.messages), s.changed
		s.mu.Unlock()
		if got >= n {
			return s.Messages()
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("testkit: %d messages after %v, want %d", got, timeout, n)
		}
	}
}

// HoldData makes every session that reaches DATA wait, after reading the message and
// before replying, until release is called. It lets tests see how many deliveries run
// at once.
func (s *Server) HoldData() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Held returns how many sessions are waiting in DATA because of HoldData.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// take consumes one injected failure for stage, if any.
func (s *Server) take(stage Stage) *smtp.SMTPError {
	s.mu.Lock()
	defer s.mu.Unlock()
	inj := s.inject[stage]
	if inj == nil {
		return nil
	}
	if inj.times > 0 {
		inj.times--
		if inj.times == 0 {
			delete(s.inject, stage)
		}
	}
	return inj.reply
}

// gate counts connections and answers injected connect-stage replies itself, since
// go-smtp always greets with 220.
type gate struct {
	net.Listener
	s *Server
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.s.mu.Lock()
		g.s.connections++
		g.s.mu.Unlock()
		reply := g.s.take(StageConnect)
		if reply == nil {
			return c, nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = fmt.Fprintf(c, "%d %s\r\n", reply.Code, replyText(reply))
		_ = c.Close()
	}
}

func replyText(e *smtp.SMTPError) string {
	if e.EnhancedCode == smtp.NoEnhancedCode || e.EnhancedCode == smtp.EnhancedCodeNotSet {
		return e.Message
	}
	c := e.EnhancedCode
	return fmt.Sprintf("%d.%d.%d %s", c[0], c[1], c[2], e.Message)
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, conn: c}, nil
}

type session struct {
	s    *Server
	conn *smtp.Conn
	from string
	to   []string
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if r := x.s.take(StageMail); r != nil {
		return r
	}
	x.from, x.to = from, nil
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	x.s.rcptCount[strings.ToLower(to)]++
	r := x.s.rejectRcpt[strings.ToLower(to)]
	x.s.mu.Unlock()
	if r != nil {
		return r
	}
	if r := x.s.take(StageRcpt); r != nil {
		return r
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	var data []byte
	var err error
	if x.s.discard {
		_, err = io.Copy(io.Discard, r)
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	hold := x.s.hold
	if hold != nil {
		x.s.held++
	}
	x.s.mu.Unlock()
	if hold != nil {
		<-hold
		x.s.mu.Lock()
		x.s.held--
		x.s.mu.Unlock()
	}
	if r := x.s.take(StageData); r != nil {
		return r
	}
	m := Message{From: x.from, To: append([]string(nil), x.to...), Data: data}
	if st, ok := x.conn.TLSConnectionState(); ok {
		m.TLS = &st
	}
	x.s.mu.Lock()
	x.s.messages = append(x.s.messages, m)
	close(x.s.changed)
	x.s.changed = make(chan struct{})
	x.s.mu.Unlock()
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
