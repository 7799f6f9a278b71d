package testkit

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// maxHeader bounds the header section WithDiscard keeps.
const maxHeader = 64 << 10

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, conn: c}, nil
}

// session is one SMTP session; go-smtp starts a new one after STARTTLS.
type session struct {
	s    *Server
	conn *smtp.Conn
	user string
	from string
	to   []string
}

// AuthMechanisms offers PLAIN when the server has WithAuth; go-smtp advertises no AUTH
// for an empty list.
func (x *session) AuthMechanisms() []string {
	if x.s.auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (x *session) Auth(mech string) (sasl.Server, error) {
	if x.s.auth == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		if err := x.s.auth(username, password); err != nil {
			return err
		}
		x.user = username
		return nil
	}), nil
}

var errAuthRequired = Reply(530, "5.7.0", "Authentication required")

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if x.s.auth != nil && x.user == "" {
		return errAuthRequired
	}
	if r := x.s.take(StageMail); r != nil {
		return r
	}
	x.from, x.to = from, nil
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if r := x.s.rcpt(to); r != nil {
		return r
	}
	x.to = append(x.to, to)
	return nil
}

var errCannotStore = Reply(451, "4.3.0", "Cannot store the message")

func (x *session) Data(r io.Reader) error {
	data, err := x.read(r)
	if err != nil {
		return err
	}
	x.s.waitHeld()
	if r := x.s.take(StageData); r != nil {
		return r
	}
	m := Message{From: x.from, To: append([]string(nil), x.to...), Data: data, User: x.user,
		LocalAddr: x.conn.Conn().LocalAddr().String()}
	if st, ok := x.conn.TLSConnectionState(); ok {
		m.TLS = &st
	}
	if err := x.s.accept(m); err != nil {
		return errCannotStore
	}
	return nil
}

// read returns the message, or with WithDiscard its header section only.
func (x *session) read(r io.Reader) ([]byte, error) {
	if !x.s.discard {
		return io.ReadAll(r)
	}
	br := bufio.NewReader(r)
	var header []byte
	for len(header) < maxHeader {
		line, err := br.ReadSlice('\n')
		header = append(header, line...)
		if errors.Is(err, io.EOF) || len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	_, err := io.Copy(io.Discard, br)
	return header, err
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
