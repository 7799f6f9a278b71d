package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// sink is the downstream SMTP server both relays deliver to: go-smtp on loopback,
// plaintext, keeping nothing but the time each message's Message-ID arrived.
type sink struct {
	addr  string
	port  int
	srv   *smtp.Server
	track atomic.Pointer[tracker]
	stray atomic.Int64 // messages no run was waiting for
	conns atomic.Int64 // SMTP sessions opened to it
}

func startSink() (*sink, error) {
	s := &sink{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.conns.Add(1)
		return &sinkSession{s: s}, nil
	}))
	s.srv.Domain = "sink.bench.example"
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 100
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s.addr, s.port = ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
	go func() { _ = s.srv.Serve(ln) }()
	addCleanup(func() { _ = s.srv.Close() })
	return s, nil
}

type sinkSession struct{ s *sink }

func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }

func (x *sinkSession) Data(r io.Reader) error {
	br := bufio.NewReader(r)
	var id string
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if name, value, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(name, "Message-ID") {
			id = strings.TrimSpace(value)
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	now := time.Now()
	if t := x.s.track.Load(); t == nil || !t.arrived(id, now) {
		x.s.stray.Add(1)
	}
	return nil
}

// tracker matches one run's messages, by Message-ID, from submission to the sink.
type tracker struct {
	mu      sync.Mutex
	sent    map[string]time.Time
	lat     []time.Duration
	last    time.Time
	changed chan struct{} // closed and replaced on every arrival
}

func newTracker(n int) *tracker {
	return &tracker{sent: make(map[string]time.Time, n), changed: make(chan struct{})}
}

// sending notes that the message id is being submitted now.
func (t *tracker) sending(id string, at time.Time) {
	t.mu.Lock()
	t.sent[id] = at
	t.mu.Unlock()
}

func (t *tracker) arrived(id string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t0, ok := t.sent[id]
	if !ok {
		return false
	}
	delete(t.sent, id)
	t.lat = append(t.lat, at.Sub(t0))
	t.last = at
	close(t.changed)
	t.changed = make(chan struct{})
	return true
}

// wait blocks until n messages have arrived, or until none has for idle; it returns the
// latencies and the time of the last arrival.
func (t *tracker) wait(n int, idle time.Duration) ([]time.Duration, time.Time, error) {
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		t.mu.Lock()
		got, changed := len(t.lat), t.changed
		if got >= n {
			lat, last := append([]time.Duration(nil), t.lat...), t.last
			t.mu.Unlock()
			return lat, last, nil
		}
		t.mu.Unlock()
		select {
		case <-changed:
			timer.Reset(idle)
		case <-timer.C:
			return nil, time.Time{}, fmt.Errorf("%d of %d messages reached the sink; none for %v", got, n, idle)
		}
	}
}

// startDNS runs a resolver on loopback UDP that answers NXDOMAIN to everything, so the
// relay under test never asks the system's resolver; with a smarthost it should not need
// DNS at all, and queries counts what it asked anyway.
func startDNS() (addr string, queries *atomic.Int64, err error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("dns: %w", err)
	}
	queries = new(atomic.Int64)
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			queries.Add(1)
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeNameError)
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	addCleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), queries, nil
}
