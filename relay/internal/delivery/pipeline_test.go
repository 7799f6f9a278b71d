package delivery

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// A server that offers PIPELINING gets MAIL, every RCPT and DATA in one segment, and
// the message with its final dot after the 354; one that does not gets one command at a
// time (go-smtp's own servers cannot show this: they answer either way alike).
func TestTransactionIsPipelinedWhenOffered(t *testing.T) {
	for _, offer := range []bool{true, false} {
		name := "offered"
		if !offer {
			name = "not offered"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			srv := startRecordingServer(t, offer)
			w.dns.Add(t, "pipe.example. MX 10 mx.pipe.example.", "mx.pipe.example. A 127.0.0.1")
			w.ports["mx.pipe.example"] = srv.port
			res := deliver(t, w.client(), "pipe.example", tlspolicy.Default, "a@pipe.example", "b@pipe.example")
			if got := outcomes(res); got != "a@pipe.example=delivered,b@pipe.example=delivered" {
				t.Fatalf("outcomes %s (%q)", got, res.Recipients[0].Text())
			}
			together := false
			for _, c := range srv.chunks() {
				if strings.HasPrefix(c, "MAIL FROM:<") && strings.Contains(c, "RCPT TO:<b@pipe.example>\r\n") && strings.HasSuffix(c, "DATA\r\n") {
					together = true
				}
			}
			if together != offer {
				t.Fatalf("MAIL, RCPT and DATA in one segment: %v, want %v; segments %q", together, offer, srv.chunks())
			}
		})
	}
}

// recordingServer is a minimal SMTP server on loopback that notes every segment it
// reads, to show how the client groups its commands.
type recordingServer struct {
	port int
	mu   sync.Mutex
	segs []string
}

func (s *recordingServer) chunks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.segs...)
}

func startRecordingServer(t *testing.T, pipelining bool) *recordingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s := &recordingServer{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, pipelining)
		}
	}()
	return s
}

// recorder passes reads through and notes each one.
type recorder struct {
	net.Conn
	s *recordingServer
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.s.mu.Lock()
		r.s.segs = append(r.s.segs, string(p[:n]))
		r.s.mu.Unlock()
	}
	return n, err
}

func (s *recordingServer) serve(conn net.Conn, pipelining bool) {
	defer conn.Close()
	r := bufio.NewReader(recorder{Conn: conn, s: s})
	say := func(line string) { _, _ = conn.Write([]byte(line + "\r\n")) }
	say("220 mx.pipe.example ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			if pipelining {
				say("250-mx.pipe.example")
				say("250 PIPELINING")
			} else {
				say("250 mx.pipe.example")
			}
		case strings.HasPrefix(verb, "MAIL"):
			say("250 2.1.0 Sender OK")
		case strings.HasPrefix(verb, "RCPT"):
			say("250 2.1.5 Recipient OK")
		case verb == "DATA":
			say("354 Go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			say("250 2.0.0 Queued")
		case verb == "RSET", verb == "NOOP":
			say("250 2.0.0 OK")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("500 5.5.2 What")
		}
	}
}
