package smtptest

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
