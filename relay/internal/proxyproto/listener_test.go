package proxyproto

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// listen starts a Listener on loopback that trusts trusted, and returns it with a
// channel of accepted connections.
func listen(t *testing.T, opts Options) (*Listener, <-chan net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, opts)
	t.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	return l, conns
}

func dial(t *testing.T, l net.Listener, send []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(send); err != nil {
		t.Fatal(err)
	}
	return c
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestTrustedPeerAddressIsTheHeaders(t *testing.T) {
	l, conns := listen(t, Options{Trusted: loopback})
	h := Header{Source: netip.MustParseAddrPort("203.0.113.7:40000"), Destination: netip.MustParseAddrPort("198.51.100.1:25")}
	for _, wire := range [][]byte{h.AppendV1(nil), h.AppendV2(nil)} {
		dial(t, l, append(wire, "EHLO client\r\n"...))
		c := <-conns
		if got := c.RemoteAddr().String(); got != "203.0.113.7:40000" {
			t.Errorf("RemoteAddr %s, want the client's from the header", got)
		}
		if got := c.LocalAddr().String(); got != "198.51.100.1:25" {
			t.Errorf("LocalAddr %s, want the destination from the header", got)
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "EHLO client\r\n" {
			t.Errorf("data after the header: %q, %v", line, err)
		}
		c.Close()
	}
}

func TestLocalHeaderKeepsPeerAddress(t *testing.T) {
	l, conns := listen(t, Options{Trusted: loopback})
	client := dial(t, l, Header{Local: true}.AppendV2(nil))
	c := <-conns
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("RemoteAddr %s, want the peer's own %s", c.RemoteAddr(), client.LocalAddr())
	}
}

func TestUntrustedPeerIsDirect(t *testing.T) {
	l, conns := listen(t, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	forged := Header{Source: netip.MustParseAddrPort("10.1.2.3:1"), Destination: netip.MustParseAddrPort("10.0.0.1:25")}.AppendV1(nil)
	client := dial(t, l, forged)
	c := <-conns
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("an untrusted peer got RemoteAddr %s, want its own %s", c.RemoteAddr(), client.LocalAddr())
	}
	got := make([]byte, len(forged))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(forged) {
		t.Errorf("an untrusted peer's header was not passed on as data: %q, %v", got, err)
	}
}

// closed waits until the server side closes c.
func closed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("connection still open (read %d bytes, %v)", n, err)
	}
}

func TestTrustedPeerWithoutHeaderIsDropped(t *testing.T) {
	rejected := make(chan error, 2)
	l, conns := listen(t, Options{
		Trusted:       loopback,
		HeaderTimeout: 100 * time.Millisecond,
		OnReject:      func(_ net.Addr, err error) { rejected <- err },
	})
	closed(t, dial(t, l, []byte("EHLO i forgot the header\r\n")))
	closed(t, dial(t, l, nil)) // silent until the header timeout
	for range 2 {
		if err := <-rejected; err == nil {
			t.Error("OnReject got a nil error")
		}
	}
	select {
	case c := <-conns:
		t.Fatalf("a connection without a header was accepted from %s", c.RemoteAddr())
	default:
	}
}

func TestSilentPeerDoesNotHoldUpAccept(t *testing.T) {
	l, conns := listen(t, Options{Trusted: loopback, HeaderTimeout: time.Hour})
	dial(t, l, nil) // never sends its header
	h := Header{Source: netip.MustParseAddrPort("192.0.2.9:9"), Destination: netip.MustParseAddrPort("192.0.2.1:25")}
	dial(t, l, h.AppendV2(nil))
	if c := <-conns; c.RemoteAddr().String() != "192.0.2.9:9" {
		t.Fatalf("accepted %s, want the second connection", c.RemoteAddr())
	}
}

func TestCloseEndsAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, Options{Trusted: loopback})
	errc := make(chan error)
	go func() { _, err := l.Accept(); errc <- err }()
	l.Close()
	if err := <-errc; err == nil {
		t.Fatal("Accept returned no error after Close")
	}
}

func TestCloseDropsConnectionsStillInTheirHeader(t *testing.T) {
	l, _ := listen(t, Options{Trusted: loopback, HeaderTimeout: time.Hour})
	client := dial(t, l, []byte("PROXY TCP4 "))
	// Wait until the listener has the connection, then close it.
	waitPending := time.Now().Add(30 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.pending)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(waitPending) {
			t.Fatal("the connection never reached the header reader")
		}
		time.Sleep(time.Millisecond)
	}
	l.Close()
	closed(t, client)
}
