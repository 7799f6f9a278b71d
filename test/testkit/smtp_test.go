package testkit

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
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

func TestAuthIsRequiredAndRecorded(t *testing.T) {
	ca := NewCA(t)
	s := Start(t, WithCertificate(ca.Leaf(t, "mx.test")), WithAuth(func(user, pass string) error {
		if user != "app" || pass != "secret" {
			return errors.New("invalid credentials")
		}
		return nil
	}))
	dial := func() *smtp.Client {
		c, err := smtp.DialStartTLS(s.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var se *smtp.SMTPError
	if err := dial().Mail("a@a.example", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("MAIL without AUTH: %v, want 530", err)
	}
	if err := dial().Auth(sasl.NewPlainClient("", "app", "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	c := dial()
	if err := c.Auth(sasl.NewPlainClient("", "app", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@a.example", []string{"b@b.example"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	m := s.WaitMessages(t, 1, 10*time.Second)[0]
	if m.User != "app" || m.TLS == nil || m.LocalAddr != s.Addr {
		t.Fatalf("recorded user %q, TLS %v, local address %s", m.User, m.TLS != nil, m.LocalAddr)
	}
}

func TestSaveDirAndOnMessage(t *testing.T) {
	dir := t.TempDir()
	var seen atomic.Int32
	s := Start(t, WithSaveDir(dir), OnMessage(func(m Message) {
		if m.Path != "" {
			seen.Add(1)
		}
	}))
	if err := send(s.Addr, "b@b.example"); err != nil {
		t.Fatal(err)
	}
	m, err := s.Wait(t.Context(), func(m Message) bool { return m.To[0] == "b@b.example" })
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(m.Path) != dir {
		t.Fatalf("saved as %q, not in %s", m.Path, dir)
	}
	if saved, err := os.ReadFile(m.Path); err != nil || !bytes.Equal(saved, m.Data) {
		t.Fatalf("the .eml file holds %q (%v), want %q", saved, err, m.Data)
	}
	if seen.Load() != 1 {
		t.Fatalf("OnMessage saw %d saved messages, want 1", seen.Load())
	}
}

func TestDiscardKeepsTheHeaderSection(t *testing.T) {
	s := Start(t, WithDiscard())
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := "Message-ID: <1@test>\r\nSubject: x\r\n\r\n" + strings.Repeat("body line\r\n", 1000)
	if err := c.SendMail("a@a.example", []string{"b@b.example"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if got := string(s.WaitMessages(t, 1, 10*time.Second)[0].Data); got != "Message-ID: <1@test>\r\nSubject: x\r\n\r\n" {
		t.Fatalf("kept %q", got)
	}
}

func TestRejectRcptIf(t *testing.T) {
	s := Start(t)
	s.RejectRcptIf(func(addr string) bool { return strings.HasPrefix(addr, "nobody@") }, Reply(550, "5.1.1", "no such user"))
	if err := send(s.Addr, "nobody@b.example"); err == nil {
		t.Fatal("a matching recipient was accepted")
	}
	if err := send(s.Addr, "somebody@b.example"); err != nil {
		t.Fatalf("another recipient was refused: %v", err)
	}
	s.RejectRcptIf(nil, nil)
	if err := send(s.Addr, "nobody@b.example"); err != nil {
		t.Fatalf("a cleared match still refuses: %v", err)
	}
	if got := s.RcptCount("nobody@b.example"); got != 2 {
		t.Fatalf("RcptCount = %d, want 2", got)
	}
}

func TestNewServerOnAnAddressAndClose(t *testing.T) {
	s, err := NewServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := send(s.Addr, "b@b.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := smtp.Dial(s.Addr); err == nil {
		t.Fatal("a closed server still accepts connections")
	}
}
