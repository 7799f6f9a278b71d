package smtpd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// conn wraps each accepted connection. It carries the state that must survive go-smtp's
// new session after STARTTLS (id, client IP, error count) and gives the server three
// levers over a connection go-smtp owns: close it after the next reply, end it when
// idle at shutdown, and release its connection-limit slot exactly once.
//
// It also holds what the server writes until the server next reads, changes the write
// deadline or closes: go-smtp flushes each line of a reply, and an EHLO reply has ten,
// each a TLS record of its own after STARTTLS, so a connection cost some twenty
// write(2)s more than its replies need. Sending before the next read is what RFC 2920
// asks of a pipelining server anyway: never wait for input with replies unsent. Sending
// before a deadline changes keeps each byte under the deadline it was written under
// (go-smtp sets one per reply; crypto/tls sets one to now once its close_notify is
// written).
type conn struct {
	net.Conn
	wmu     sync.Mutex
	wbuf    []byte // written by the server, not yet sent
	werr    error  // why a send failed: every later read and write fails with it
	id      string
	ip      netip.Addr
	release func()
	srv     *Server

	started time.Time    // when it was admitted, for MaxSessionLifetime
	idle    atomic.Int32 // commands outside a transaction since the last accepted message
	ended   atomic.Bool  // a session limit ended it; logged once
	// dataDeadline (Unix nanoseconds; 0 outside DATA) caps every read deadline while a
	// message is read: with BDAT, go-smtp reads a command line before each chunk and
	// would otherwise move the deadline a command timeout further every time.
	dataDeadline atomic.Int64
	errors       atomic.Int32 // rejected commands on this connection
	busy         atomic.Bool  // inside a mail transaction
	authed       atomic.Bool  // logged in: never evicted for a newcomer
	draining     atomic.Bool  // shutting down: end as soon as idle
	closeOnSend  atomic.Bool  // close right after the next write
	closeOnce    sync.Once
}

// maxHeld bounds what a connection holds unsent: more is sent at once.
const maxHeld = 16 << 10

func (c *conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	err := c.werr
	if err == nil {
		c.wbuf = append(c.wbuf, b...)
		if len(c.wbuf) >= maxHeld {
			err = c.sendLocked()
		}
	}
	c.wmu.Unlock()
	if c.closeOnSend.Load() {
		c.Close()
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// Read sends what the server has written before it waits for the client.
func (c *conn) Read(b []byte) (int, error) {
	if err := c.send(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	if err := c.send(); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.send(); err != nil {
		return err
	}
	return c.Conn.SetDeadline(t)
}

func (c *conn) send() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.sendLocked()
}

// sendLocked writes what is held and keeps the buffer for the next reply.
func (c *conn) sendLocked() error {
	if c.werr != nil || len(c.wbuf) == 0 {
		return c.werr
	}
	_, c.werr = c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return c.werr
}

// SetReadDeadline is where the server ends a connection between commands: go-smtp sets a
// deadline before reading every command line (Data sets its own on the raw connection),
// and an expired one makes it answer 421 4.4.2 and close. A draining server ends idle
// connections so; so do the session limits, whose reason goes to the log and metrics
// (go-smtp's reply text is its own).
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.draining.Load() && !c.busy.Load() {
		t = time.Now()
	} else if reason := c.sessionLimit(); reason != "" {
		if !c.ended.Swap(true) {
			c.srv.metrics.MessagesRejected.WithLabelValues(reason).Inc()
			c.srv.logger.Info("closing connection", "session", c.id, "client_ip", c.ip.String(), "reason", reason)
		}
		t = time.Now()
	}
	if dl := c.dataDeadline.Load(); dl != 0 && (t.IsZero() || t.UnixNano() > dl) {
		t = time.Unix(0, dl)
	}
	return c.Conn.SetReadDeadline(t)
}

// sessionLimit counts the command about to be read and names the limit it breaks, if
// any: the session's lifetime, or JunkCommandLimit commands outside a transaction.
func (c *conn) sessionLimit() string {
	lim := c.srv.limits
	if c.srv.opts.Now().Sub(c.started) > lim.MaxSessionLifetime {
		return "session_lifetime"
	}
	if !c.busy.Load() && int(c.idle.Add(1)) > lim.JunkCommandLimit {
		return "junk_commands"
	}
	return ""
}

func (c *conn) Close() error {
	// The last reply (221, 421) goes out before the close. Close from another goroutine,
	// at shutdown, does not wait behind a send in progress: closing ends that send.
	if c.wmu.TryLock() {
		_ = c.sendLocked()
		c.wmu.Unlock()
	}
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.release()
		c.srv.forget(c)
	})
	return err
}

// drain marks the connection for shutdown and wakes it if it is waiting for a command.
func (c *conn) drain() {
	c.draining.Store(true)
	if !c.busy.Load() {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

// listener applies the connection limits before go-smtp sees a connection: a client over
// a limit gets 421 4.7.0 and is closed without a session.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, ok := l.srv.admit(raw)
		if ok {
			return c, nil
		}
	}
}

func newConnID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func remoteIP(remote net.Addr) netip.Addr {
	if remote == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote.String()); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// admit counts a new connection against the limits; a refused one is answered and
// closed in the background, so a flood cannot stall Accept on slow writes.
func (s *Server) admit(raw net.Conn) (*conn, bool) {
	var ip netip.Addr
	if s.opts.ClientIP != nil {
		ip = s.opts.ClientIP(raw.RemoteAddr().String())
	} else {
		ip = remoteIP(raw.RemoteAddr())
	}
	mode := s.opts.Mode.String()
	release, ok, scope := s.conns.Acquire(ip)
	if !ok && scope == "total" && s.evictOne() {
		release, ok, scope = s.conns.Acquire(ip)
	}
	if !ok {
		s.metrics.Connections.WithLabelValues(mode, "limit_"+scope).Inc()
		s.logger.Info("connection refused", "client_ip", ip.String(), "limit", scope)
		go func() {
			_ = raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = raw.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
			_ = raw.Close()
		}()
		return nil, false
	}
	s.metrics.Connections.WithLabelValues(mode, "accepted").Inc()
	s.metrics.ActiveConnections.WithLabelValues(mode).Inc()
	c := &conn{Conn: raw, id: newConnID(), ip: ip, srv: s, started: s.opts.Now()}
	c.release = func() {
		release()
		s.metrics.ActiveConnections.WithLabelValues(mode).Dec()
	}
	s.mu.Lock()
	s.live[c] = struct{}{}
	draining := s.draining
	s.mu.Unlock()
	if draining {
		c.drain()
	}
	return c, true
}

// evictOne makes room for a new connection when the listener is full, by closing the
// oldest connection that has neither logged in nor begun a transaction. Without it, a
// few hundred idle connections from many networks, each under every per-network limit,
// would lock out the clients that would log in; with it, they cycle out while logged-in
// sessions and messages in flight keep their slots. It reports whether a slot was freed.
func (s *Server) evictOne() bool {
	s.mu.Lock()
	var victim *conn
	for c := range s.live {
		if c.authed.Load() || c.busy.Load() || c.draining.Load() {
			continue
		}
		if victim == nil || c.started.Before(victim.started) {
			victim = c
		}
	}
	s.mu.Unlock()
	if victim == nil {
		return false
	}
	s.metrics.Connections.WithLabelValues(s.opts.Mode.String(), "evicted").Inc()
	s.logger.Info("closing an idle connection that has not logged in, to admit a new one",
		"session", victim.id, "client_ip", victim.ip.String(), "age", s.opts.Now().Sub(victim.started).Round(time.Second))
	// Closing frees the slot now; the session's pending read fails and go-smtp ends it.
	// No reply is written: the connection may be inside TLS, which a plaintext 421
	// would corrupt, and go-smtp may be writing a reply of its own.
	_ = victim.Close()
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.live, c)
	s.mu.Unlock()
}

// connOf finds our wrapper under go-smtp's connection (a *tls.Conn after STARTTLS).
func connOf(nc net.Conn) (*conn, error) {
	for range 4 {
		switch v := nc.(type) {
		case *conn:
			return v, nil
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return nil, errors.New("connection was not accepted by this server")
		}
	}
	return nil, errors.New("connection was not accepted by this server")
}
