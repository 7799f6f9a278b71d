package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/test/testkit"
)

// sealedPrefix stands for the DKIM signatures smtpd stores before a message's body.
const sealedPrefix = "DKIM-Signature: v=1; a=ed25519-sha256; d=a.example; s=ed1;\r\n b=c2lnbmF0dXJl\r\n"

// acceptSealed queues a message whose state holds sealedPrefix, as smtpd queues a
// signed one.
func (h *harness) acceptSealed(sender string, rcpts ...string) string {
	h.t.Helper()
	id := h.spool.NewID()
	err := h.spool.AcceptSealed(context.Background(), id, spool.Envelope{
		Sender: sender, Recipients: rcpts, Direction: DirectionOutbound,
	}, strings.NewReader(message("test")), func(env *spool.Envelope) error {
		env.Prepend = sealedPrefix
		return nil
	}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// Each attempt sends the stored prefix and then the body; a bounce returns the header
// the recipient would have seen.
func TestDeliverySendsTheStoredPrefix(t *testing.T) {
	h := newHarness(t, Retry{First: time.Minute})
	dest := h.mx("dest.example", "mx.dest.example", 10)
	dest.RejectRcpt("gone@dest.example", testkit.Reply(550, "5.1.1", "no such user"))
	dest.Inject(testkit.StageData, testkit.Reply(451, "4.3.0", "try again"), 1)
	h.start()
	id := h.acceptSealed("alice@a.example", "b@dest.example", "gone@dest.example")
	h.waitAttempt(id, 1) // deferred at DATA: the second attempt reads the message again
	h.clock.Advance(2 * time.Minute)
	h.waitGone(id)

	got := dest.Messages()
	want := sealedPrefix + message("test")
	if len(got) != 1 || string(got[0].Data) != want {
		t.Fatalf("delivered %d messages; the message:\n%q\nwant\n%q", len(got), got[0].Data, want)
	}
	r := parseReport(t, h.sender.WaitMessages(t, 1, 15*time.Second)[0])
	if !strings.HasPrefix(r.headers, sealedPrefix) || !strings.Contains(r.headers, "Subject: test\r\n") {
		t.Errorf("the bounce's returned headers lack the prefix:\n%s", r.headers)
	}
}
