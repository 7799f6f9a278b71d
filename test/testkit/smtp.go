package testkit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	// Data is the message as received; with WithDiscard, only its header section.
	Data []byte
	// TLS is the session's TLS state; nil for a plaintext session.
	TLS *tls.ConnectionState
	// User is the name the client authenticated as (WithAuth); "" without AUTH.
	User string
	// LocalAddr is the server address the message arrived on.
	LocalAddr string
	// Path is the message's .eml file (WithSaveDir); "" when not saved.
	Path string
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

// WithDiscard makes the server keep envelopes and header sections but drop message
// bodies, for benchmarks that send more than memory should hold.
func WithDiscard() Option { return func(s *Server) { s.discard = true } }

// WithDomain sets the name the server gives in its greeting and EHLO reply.
func WithDomain(name string) Option { return func(s *Server) { s.srv.Domain = name } }

// WithAuth makes the server offer AUTH PLAIN (after STARTTLS when it offers STARTTLS)
// and require it before MAIL, answering 530 5.7.0 until then. check decides each
// attempt: nil accepts the user, and an error refuses it.
func WithAuth(check func(username, password string) error) Option {
	return func(s *Server) { s.auth = check }
}

// WithSaveDir makes the server also write each message it accepts to dir as one .eml
// file, named by its arrival time, and set the message's Path. A message it cannot save
// gets 451 4.3.0.
func WithSaveDir(dir string) Option { return func(s *Server) { s.saveDir = dir } }

// OnMessage makes the server call f with each message it accepts, before recording it
// and replying to the DATA; f must be safe for concurrent use.
func OnMessage(f func(Message)) Option { return func(s *Server) { s.onMessage = f } }

// Server is a running fake SMTP server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the listening address, host:port.
	Addr string
	// Port is the listening port.
	Port int

	srv       *smtp.Server
	ln        net.Listener
	done      chan struct{}
	close     sync.Once
	discard   bool
	auth      func(username, password string) error
	saveDir   string
	onMessage func(Message)

	mu          sync.Mutex
	messages    []Message
	saved       int // messages written to saveDir, for file names
	inject      map[Stage]*injection
	rejectRcpt  map[string]*smtp.SMTPError
	rejectIf    func(addr string) *smtp.SMTPError
	rcptCount   map[string]int
	connections int
	changed     chan struct{} // closed and replaced whenever a message arrives
	hold        chan struct{} // while non-nil, DATA waits until it is closed
	held        int           // sessions waiting in DATA
}

// NewServer listens on addr (such as 127.0.0.1:0) and serves until Close. Without
// options it does not offer STARTTLS.
func NewServer(addr string, opts ...Option) (*Server, error) {
	s := &Server{
		done:       make(chan struct{}),
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
	// Clients that hang up mid-handshake (a relay refusing a certificate) are not news.
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(s)
	}
	s.srv.AllowInsecureAuth = s.auth != nil && s.srv.TLSConfig == nil
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testkit: listening for smtp on %s: %w", addr, err)
	}
	s.ln = &gate{Listener: ln, s: s}
	s.Addr = ln.Addr().String()
	s.Port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.ln)
	}()
	return s, nil
}

// Start starts a server on 127.0.0.1 that is closed when the test ends.
func Start(t TB, opts ...Option) *Server {
	t.Helper()
	s, err := NewServer("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Close stops the server, closing open sessions, and waits until it has.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		// Close the listener too: if Serve has not registered it yet, srv.Close would
		// not see it, and Serve would then wait for connections forever.
		_ = s.ln.Close()
		if err = s.srv.Close(); errors.Is(err, net.ErrClosed) {
			err = nil // the listener, closed just above
		}
		<-s.done
	})
	return err
}
