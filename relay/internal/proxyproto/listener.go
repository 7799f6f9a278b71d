package proxyproto

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultHeaderTimeout bounds how long a trusted peer has to send its header.
const DefaultHeaderTimeout = 5 * time.Second

// Options configure a Listener.
type Options struct {
	// Trusted are the networks of the balancers. A peer inside one must send a header;
	// a peer outside every one is served as a direct connection, its header (if it sends
	// one) unread, so that it reaches the SMTP server as junk and no one outside the list
	// can claim another address.
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for a trusted peer's header (DefaultHeaderTimeout
	// when zero).
	HeaderTimeout time.Duration
	// OnReject, when set, hears of every trusted connection dropped for a missing or
	// malformed header, with the peer address. For logs and metrics.
	OnReject func(peer net.Addr, err error)
}

// Listener wraps a net.Listener: Accept returns connections whose RemoteAddr and
// LocalAddr are the ones the trusted balancer reported. Headers are read concurrently,
// so a slow or silent peer never holds up Accept.
type Listener struct {
	inner net.Listener
	opts  Options

	conns     chan accepted
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections whose header is being read
	closed  bool
}

type accepted struct {
	conn net.Conn
	err  error
}

// NewListener starts accepting on inner.
func NewListener(inner net.Listener, opts Options) *Listener {
	if opts.HeaderTimeout <= 0 {
		opts.HeaderTimeout = DefaultHeaderTimeout
	}
	l := &Listener{inner: inner, opts: opts, conns: make(chan accepted), done: make(chan struct{}),
		pending: map[net.Conn]struct{}{}}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.deliver(accepted{err: err}) && !errors.Is(err, net.ErrClosed) {
				continue
			}
			return
		}
		if !l.trusted(c.RemoteAddr()) {
			if !l.deliver(accepted{conn: c}) {
				c.Close()
			}
			continue
		}
		go l.handshake(c)
	}
}

// deliver hands a to Accept, or reports false once the listener is closed.
func (l *Listener) deliver(a accepted) bool {
	select {
	case l.conns <- a:
		return true
	case <-l.done:
		return false
	}
}

func (l *Listener) trusted(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ap := tcp.AddrPort()
	ip := ap.Addr().Unmap()
	for _, p := range l.opts.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *Listener) handshake(c net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.pending[c] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, c)
		l.mu.Unlock()
	}()
	_ = c.SetReadDeadline(time.Now().Add(l.opts.HeaderTimeout))
	r := bufio.NewReaderSize(c, 256)
	h, err := ReadHeader(r)
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if l.opts.OnReject != nil {
			l.opts.OnReject(c.RemoteAddr(), err)
		}
		c.Close()
		return
	}
	pc := &Conn{Conn: c, r: r, remote: c.RemoteAddr(), local: c.LocalAddr(), Header: h}
	if !h.Local {
		pc.remote = net.TCPAddrFromAddrPort(h.Source)
		pc.local = net.TCPAddrFromAddrPort(h.Destination)
	}
	if !l.deliver(accepted{conn: pc}) {
		c.Close()
	}
}

// Accept waits for the next connection whose header, if it owes one, has been read.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.conns:
		return a.conn, a.err
	case <-l.done:
		return nil, fmt.Errorf("proxyproto: %w", net.ErrClosed)
	}
}

// Close stops accepting; connections still sending their header are closed.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Conn is a connection from a trusted balancer, with the addresses its header reported.
type Conn struct {
	net.Conn
	Header        Header
	r             *bufio.Reader
	remote, local net.Addr
}

// Read reads what the header reader buffered first, then the connection.
func (c *Conn) Read(b []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(b)
		}
		c.r = nil
	}
	return c.Conn.Read(b)
}

// RemoteAddr is the client's address as the balancer reported it.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client connected to, as the balancer reported it.
func (c *Conn) LocalAddr() net.Addr { return c.local }
