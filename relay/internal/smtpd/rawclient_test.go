package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/testkit"
)

// client is the raw-protocol test client: the rungs are dial (greeting), ehlo,
// starttls, auth, then cmd for anything.
type client struct {
	t    testing.TB
	e    *testEnv
	conn net.Conn
	r    *bufio.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &client{t: e.t, e: e, conn: conn, r: bufio.NewReader(conn)}
	c.expect("", "220 ")
	return c
}

// reply reads one (possibly multi-line) reply and returns its lines.
func (c *client) reply() []string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply (after %q): %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("writing %q: %v", line, err)
	}
}

// cmd sends line and returns the last line of the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	lines := c.reply()
	return lines[len(lines)-1]
}

// expect sends line (none if empty) and checks that the reply starts with prefix.
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	if line != "" {
		c.send(line)
	}
	lines := c.reply()
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("%q: got %q, want %q...", line, last, prefix)
	}
	return last
}

func (c *client) ehlo() []string {
	c.t.Helper()
	c.send("EHLO client.test.example")
	lines := c.reply()
	if !strings.HasPrefix(lines[0], "250") {
		c.t.Fatalf("EHLO: %q", lines)
	}
	caps := make([]string, 0, len(lines))
	for _, l := range lines[1:] {
		caps = append(caps, l[4:])
	}
	return caps
}

func (c *client) starttls() {
	c.t.Helper()
	c.expect("STARTTLS", "220 ")
	tc := tls.Client(c.conn, c.e.tls.client)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func plain(authzid, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + user + "\x00" + pass))
}

// auth does AUTH PLAIN and checks the reply prefix.
func (c *client) auth(user, pass, want string) {
	c.t.Helper()
	c.expect("AUTH PLAIN "+plain("", user, pass), want)
}

// submission is a client that is through EHLO, STARTTLS, EHLO and AUTH as user.
func (e *testEnv) submission(user, pass string) *client {
	c := e.dial()
	c.ehlo()
	c.starttls()
	c.ehlo()
	c.auth(user, pass, "235 ")
	return c
}

// data sends DATA and the message (CRLF line endings as given) and returns the reply.
func (c *client) data(msg string) string {
	c.t.Helper()
	c.expect("DATA", "354 ")
	if _, err := io.WriteString(c.conn, msg+".\r\n"); err != nil {
		c.t.Fatal(err)
	}
	lines := c.reply()
	return lines[len(lines)-1]
}

// queueID extracts the id from "250 2.0.0 OK: queued as ID".
func queueID(t *testing.T, reply string) string {
	t.Helper()
	_, id, ok := strings.Cut(reply, "queued as ")
	if !strings.HasPrefix(reply, "250 2.0.0 ") || !ok {
		t.Fatalf("reply %q is not a queued message", reply)
	}
	return id
}

func msg(from, to, subject string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <1@client.test.example>\r\n\r\nHello.\r\n"
}

// readEOF checks that the server closes the connection (after any further replies).
func (c *client) readEOF() []string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var rest []string
	for {
		line, err := c.r.ReadString('\n')
		if line != "" {
			rest = append(rest, strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %q", rest)
			}
			return rest
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, what, testkit.Until(cond))
}
