package testkit

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Stage is the point of an SMTP session where a reply can be injected.
type Stage int

// Stages at which Inject can fail a session.
const (
	StageConnect Stage = iota // the greeting: the server answers and closes
	StageMail                 // MAIL FROM
	StageRcpt                 // every RCPT TO (see RejectRcpt for one recipient)
	StageData                 // the reply after the final dot
)

// Reply builds an SMTP reply such as Reply(451, "4.3.0", "try later").
func Reply(code int, enhanced, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text, EnhancedCode: smtp.NoEnhancedCode}
	var a, b, c int
	if _, err := fmt.Sscanf(enhanced, "%d.%d.%d", &a, &b, &c); err == nil {
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
	}
	return e
}

type injection struct {
	reply *smtp.SMTPError
	times int // remaining failures; negative means always
}

// Inject makes the next times sessions reaching stage get reply instead of success;
// times < 0 means every session from now on, and a nil reply removes the injection.
func (s *Server) Inject(stage Stage, reply *smtp.SMTPError, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == nil || times == 0 {
		delete(s.inject, stage)
		return
	}
	s.inject[stage] = &injection{reply: reply, times: times}
}

// RejectRcpt makes every RCPT TO for addr get reply; a nil reply accepts it again.
func (s *Server) RejectRcpt(addr string, reply *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == nil {
		delete(s.rejectRcpt, strings.ToLower(addr))
		return
	}
	s.rejectRcpt[strings.ToLower(addr)] = reply
}

// RejectRcptIf makes every RCPT TO for an address match holds get reply, as a domain's
// own server refuses the mailboxes it does not have; a nil match accepts all again. It
// replaces the previous match, and RejectRcpt's addresses are refused either way.
func (s *Server) RejectRcptIf(match func(addr string) bool, reply *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if match == nil {
		s.rejectIf = nil
		return
	}
	s.rejectIf = func(addr string) *smtp.SMTPError {
		if match(addr) {
			return reply
		}
		return nil
	}
}

// HoldData makes every session that reaches DATA wait, after reading the message and
// before replying, until release is called. It lets tests see how many deliveries run
// at once.
func (s *Server) HoldData() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Held returns how many sessions are waiting in DATA because of HoldData.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// take consumes one injected failure for stage, if any.
func (s *Server) take(stage Stage) *smtp.SMTPError {
	s.mu.Lock()
	defer s.mu.Unlock()
	inj := s.inject[stage]
	if inj == nil {
		return nil
	}
	if inj.times > 0 {
		inj.times--
		if inj.times == 0 {
			delete(s.inject, stage)
		}
	}
	return inj.reply
}

// rcpt counts a RCPT TO for addr and returns the reply it is refused with, if any.
func (s *Server) rcpt(addr string) *smtp.SMTPError {
	key := strings.ToLower(addr)
	s.mu.Lock()
	s.rcptCount[key]++
	r := s.rejectRcpt[key]
	if r == nil && s.rejectIf != nil {
		r = s.rejectIf(addr)
	}
	s.mu.Unlock()
	if r != nil {
		return r
	}
	return s.take(StageRcpt)
}

// waitHeld blocks while HoldData holds DATA.
func (s *Server) waitHeld() {
	s.mu.Lock()
	hold := s.hold
	if hold != nil {
		s.held++
	}
	s.mu.Unlock()
	if hold == nil {
		return
	}
	<-hold
	s.mu.Lock()
	s.held--
	s.mu.Unlock()
}

// gate counts connections and answers injected connect-stage replies itself, since
// go-smtp always greets with 220.
type gate struct {
	net.Listener
	s *Server
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.s.mu.Lock()
		g.s.connections++
		g.s.mu.Unlock()
		reply := g.s.take(StageConnect)
		if reply == nil {
			return c, nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = fmt.Fprintf(c, "%d %s\r\n", reply.Code, replyText(reply))
		_ = c.Close()
	}
}

func replyText(e *smtp.SMTPError) string {
	if e.EnhancedCode == smtp.NoEnhancedCode || e.EnhancedCode == smtp.EnhancedCodeNotSet {
		return e.Message
	}
	c := e.EnhancedCode
	return fmt.Sprintf("%d.%d.%d %s", c[0], c[1], c[2], e.Message)
}
