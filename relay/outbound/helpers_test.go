package outbound

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// scripted is a raw SMTP server on loopback for what testkit's server does not do:
// data sent unasked after a reply, and AUTH. It offers STARTTLS when it has a
// certificate, and the AUTH mechanisms in auth ("PLAIN LOGIN") once encrypted, or
// always when authPlaintext is set. The only account is user/secret.
type scripted struct {
	t             testing.TB
	cert          *tls.Certificate
	auth          string
	authPlaintext bool
	// noEHLO answers EHLO with 502, as an RFC 821 server does.
	noEHLO bool
	// afterEHLO and afterSTARTTLS are written right after those replies, unasked.
	afterEHLO, afterSTARTTLS string

	port     int
	mu       sync.Mutex
	commands []string // verbs received, with AUTH's mechanism
}

func (s *scripted) start() *scripted {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = ln.Close() })
	s.port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *scripted) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(lines ...string) { _, _ = c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n")) }
	read := func() string {
		l, _ := r.ReadString('\n')
		return strings.TrimRight(l, "\r\n")
	}
	encrypted := false
	say("220 scripted ESMTP")
	for {
		line := read()
		if line == "" {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		s.mu.Lock()
		if verb == "AUTH" {
			mech, _, _ := strings.Cut(arg, " ")
			s.commands = append(s.commands, "AUTH "+mech)
		} else {
			s.commands = append(s.commands, verb)
		}
		s.mu.Unlock()
		switch verb {
		case "EHLO":
			if s.noEHLO {
				say("502 5.5.2 command not recognized")
				continue
			}
			lines := []string{"250-scripted"}
			if s.cert != nil && !encrypted {
				lines = append(lines, "250-STARTTLS")
			}
			if s.auth != "" && (encrypted || s.authPlaintext) {
				lines = append(lines, "250-AUTH "+s.auth)
			}
			lines = append(lines, "250 8BITMIME")
			if s.afterEHLO != "" {
				lines = append(lines, s.afterEHLO) // in the same write, as an attacker would
			}
			say(lines...)
		case "STARTTLS":
			if s.afterSTARTTLS != "" {
				say("220 go ahead", s.afterSTARTTLS)
			} else {
				say("220 go ahead")
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*s.cert}})
			if tc.Handshake() != nil {
				return
			}
			c, r, encrypted = tc, bufio.NewReader(tc), true
		case "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			var user, pass string
			switch strings.ToUpper(mech) {
			case "PLAIN":
				b, _ := base64.StdEncoding.DecodeString(ir)
				parts := strings.Split(string(b), "\x00")
				if len(parts) == 3 {
					user, pass = parts[1], parts[2]
				}
			case "LOGIN":
				say("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
				u, _ := base64.StdEncoding.DecodeString(read())
				say("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
				p, _ := base64.StdEncoding.DecodeString(read())
				user, pass = string(u), string(p)
			}
			if user == "user" && pass == "secret" {
				say("235 2.7.0 authenticated")
			} else {
				say("535 5.7.8 bad credentials")
			}
		case "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}
