package testkit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func send(addr, rcpt string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.SendMail("a@a.example", []string{rcpt}, strings.NewReader("Subject: x\r\n\r\nhi\r\n"))
}

func TestInjections(t *testing.T) {
	tests := map[string]struct {
		stage    Stage
		wantCode int
	}{
		"a connect injection answers before the greeting": {StageConnect, 421},
		"a MAIL injection refuses the sender":             {StageMail, 451},
		"a RCPT injection refuses the recipient":          {StageRcpt, 550},
		"a DATA injection refuses the message":            {StageData, 554},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := Start(t)
			s.Inject(tc.stage, Reply(tc.wantCode, "4.0.0", "injected"), 1)
			var se *smtp.SMTPError
			if err := send(s.Addr, "b@b.example"); !errors.As(err, &se) || se.Code != tc.wantCode {
				t.Fatalf("first send: %v, want %d", err, tc.wantCode)
			}
			if err := send(s.Addr, "b@b.example"); err != nil {
				t.Fatalf("a one-time injection lasted: %v", err)
			}
			got := s.WaitMessages(t, 1, 10*time.Second)
			if len(got) != 1 || got[0].To[0] != "b@b.example" || got[0].TLS != nil {
				t.Fatalf("recorded %+v", got)
			}
			if s.Connections() != 2 {
				t.Fatalf("%d connections counted", s.Connections())
			}
		})
	}
}

func TestRejectRcptIsPerRecipient(t *testing.T) {
	s := Start(t)
	s.RejectRcpt("Gone@B.example", Reply(550, "5.1.1", "no such user"))
	if err := send(s.Addr, "gone@b.example"); err == nil {
		t.Fatal("a rejected recipient was accepted")
	}
	if err := send(s.Addr, "ok@b.example"); err != nil {
		t.Fatalf("another recipient was refused: %v", err)
	}
}

// cleanupTB runs Start's cleanup when the test says, not when it ends.
type cleanupTB struct {
	testing.TB
	cleanups []func()
}

func (c *cleanupTB) Cleanup(f func()) { c.cleanups = append(c.cleanups, f) }

func TestCleanupRightAfterStartReturns(t *testing.T) {
	// Stopping a server whose Serve goroutine has not run yet must not wait forever.
	for range 50 {
		tb := &cleanupTB{TB: t}
		s := Start(tb)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, f := range tb.cleanups {
				f()
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("cleanup of the server on %s hangs", s.Addr)
		}
	}
}

func TestRcptCountCountsEveryReply(t *testing.T) {
	s := Start(t)
	s.RejectRcpt("gone@b.example", Reply(550, "5.1.1", "no such user"))
	_ = send(s.Addr, "Gone@b.example")
	_ = send(s.Addr, "gone@b.example")
	_ = send(s.Addr, "ok@b.example")
	if got := s.RcptCount("GONE@b.example"); got != 2 {
		t.Errorf("RcptCount(gone) = %d, want 2", got)
	}
	if got := s.RcptCount("ok@b.example"); got != 1 {
		t.Errorf("RcptCount(ok) = %d, want 1", got)
	}
}
