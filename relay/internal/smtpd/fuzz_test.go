package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bdat sends a BDAT chunk and returns the reply.
func (c *client) bdat(chunk string, last bool) string {
	c.t.Helper()
	cmd := "BDAT " + strconv.Itoa(len(chunk))
	if last {
		cmd += " LAST"
	}
	if _, err := io.WriteString(c.conn, cmd+"\r\n"+chunk); err != nil {
		c.t.Fatal(err)
	}
	lines := c.reply()
	return lines[len(lines)-1]
}

func TestChunkingGoesThroughTheSameChecks(t *testing.T) {
	e := newEnv(t, Submission)
	c := e.submission("alice-relay", alicePassword)
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	m := msg("alice@example.com", "x@foreign.example", "chunked")
	if got := c.bdat(m[:20], false); !strings.HasPrefix(got, "250 2.0.0 ") {
		t.Fatalf("first chunk: %q", got)
	}
	id := queueID(t, c.bdat(m[20:], true))
	if _, body := e.message(id); !strings.HasSuffix(body, m) {
		t.Errorf("chunked body = %q", body)
	}

	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	if got := c.bdat(msg("ceo@bank.example", "x@foreign.example", "x"), true); !strings.HasPrefix(got, "553 5.7.1 ") {
		t.Fatalf("forged From: in BDAT = %q", got)
	}
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<x@foreign.example>", "250 ")
	if got := c.bdat(m+"bare\nLF\r\n", true); !strings.HasPrefix(got, "550 5.6.0 ") {
		t.Fatalf("bare LF in BDAT = %q", got)
	}
	if n := e.spool.Len(); n != 1 {
		t.Errorf("spool holds %d messages, want 1", n)
	}
}

// go-smtp's BDAT handling races with itself when the transaction is reset between
// chunks (a new chunk's result channel is replaced while the old Data goroutine still
// sends on it), so the server ends such a connection; the aborted message is not kept.
func TestResetDuringChunkingEndsTheConnection(t *testing.T) {
	cases := map[string]func(c *client){
		"RSET between chunks closes the connection": func(c *client) {
			c.send("RSET")
		},
		"an oversized chunk is refused with 552, then the connection closes": func(c *client) {
			c.send("BDAT 6000\r\n" + strings.Repeat("abcd\r\n", 1000)[:5998])
			c.expect("", "552 5.3.4 ")
		},
	}
	for name, step := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Inbound, withLimits(func(l *Limits) { l.MaxMessageBytes = 4000 }))
			c := e.dial()
			c.ehlo()
			c.expect("MAIL FROM:<x@foreign.example>", "250 ")
			c.expect("RCPT TO:<alice@example.com>", "250 ")
			if got := c.bdat("From: x@foreign.example\r\n", false); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("chunk: %q", got)
			}
			step(c)
			c.readEOF()
			waitFor(t, "the connection to end", func() bool { return e.srv.ActiveConnections() == 0 })
			if n := e.spool.Len(); n != 0 {
				t.Fatalf("spool holds %d messages", n)
			}
		})
	}
}

// FuzzSession feeds raw bytes to a live inbound session over loopback, after a greeting
// and EHLO, and checks that the server answers within the deadline, closes or keeps the
// connection cleanly, and leaks no connection slot.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"MAIL FROM:<x@foreign.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nFrom: x@foreign.example\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"MAIL FROM:<x@foreign.example>\r\nRCPT TO:<alice@example.com>\r\nBDAT 5 LAST\r\nhello",
		"MAIL FROM:<>\r\nRCPT TO:<\"a@b\"@example.com>\r\nRCPT TO:<@a:b@c>\r\n",
		"AUTH PLAIN AGFsaWNlAHg=\r\nAUTH LOGIN\r\n*\r\n",
		"STARTTLS\r\nMAIL FROM:<a@b.example>\r\n",
		"DATA\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nHELP\r\n",
		"MAIL FROM:<x@foreign.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nx\n.\nMAIL FROM:<y>\r\n.\r\n",
		"BDAT 99999999999\r\n\x00\xff\r\n",
		"MAIL FROM:<x@foreign.example> SIZE=abc BODY=BINARYMIME\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// One server for all inputs: building one per input would make fuzzing crawl. Each
	// input must leave it with no connection open.
	e := newEnv(f, Inbound, withLimits(func(l *Limits) {
		l.CommandTimeout = 2 * time.Second
		l.DataTimeout = 2 * time.Second
		l.MaxMessageBytes = 1 << 20
		// Every input is a new connection from loopback: lift the per-address rate.
		l.MaxConnectionRatePerIP = 1 << 30
	}))
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(conn, "EHLO fuzz.example\r\n"); err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(input)
		_, _ = io.WriteString(conn, "\r\n.\r\nQUIT\r\n")
		_ = conn.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(conn)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("server did not finish the session: %q", out)
			}
		}
		if bytes.Contains(out, []byte("Internal server error")) {
			t.Fatalf("the session panicked (go-smtp's 421 4.0.0): %q", out)
		}
		if !bytes.HasPrefix(out, []byte("220 ")) {
			t.Fatalf("no greeting: %q", out)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
			if len(line) < 4 || line[0] < '2' || line[0] > '5' {
				t.Fatalf("malformed reply line %q in %q", line, out)
			}
		}
		waitFor(t, "the connection to be released", func() bool { return e.srv.ActiveConnections() == 0 })
	})
}
