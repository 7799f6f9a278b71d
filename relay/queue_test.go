package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/queueadmin"
	"github.com/postwarden/postwarden/relay/internal/queuecli"
	"github.com/postwarden/postwarden/test/testkit"
)

// An administrator manages a running relay's queue with `postwarden queue` over the
// admin socket in the spool folder: the next hop defers, and each command is checked
// by what the next hop and the sender's server then see.
func TestQueueCommandsThroughTheAdminSocket(t *testing.T) {
	a, _ := creds(t)
	sink, senderMX := testkit.Start(t), testkit.Start(t) // the smarthost; the sender domain's own server
	const (
		heldRcpt, laterRcpt, deletedRcpt = "held@elsewhere.example", "later@elsewhere.example", "deleted@elsewhere.example"
		bouncedRcpt, busyRcpt            = "bounced@elsewhere.example", "busy@elsewhere.example"
	)
	for _, rcpt := range []string{heldRcpt, deletedRcpt, bouncedRcpt} {
		sink.RejectRcpt(rcpt, testkit.Reply(451, "4.2.0", "mailbox busy, try later"))
	}
	f := startFileRelay(t, withInboundDelivery(t, newSnapshot(t, certEntry, a), senderMX), deliverVia(t, sink), withAdminSocket)
	waitFor(t, "readiness", f.Ready)
	socket := filepath.Join(f.dir, "spool", queueadmin.SocketName)
	q := queueCLI{t: t, socket: socket}

	held := submitTo(t, f, a, heldRcpt)
	q.waitDeferred(held)

	// list: a table for people, JSON for scripts, and the filters.
	table := q.ok("list")
	for _, want := range []string{held, "deferred", a.user, "sender@" + a.domain, heldRcpt, "-- 1 message,"} {
		if !strings.Contains(table, want) {
			t.Errorf("list does not show %q:\n%s", want, table)
		}
	}
	msgs := q.list()
	if len(msgs) != 1 || msgs[0].ID != held || msgs[0].State != queueadmin.StateDeferred || msgs[0].Credential != a.user ||
		msgs[0].Sender != "sender@"+a.domain || msgs[0].Attempts != 1 || !strings.Contains(msgs[0].Recipients[0].LastReply, "451 4.2.0") {
		t.Errorf("list -o json = %+v", msgs)
	}
	for filter, want := range map[string]int{
		"--credential=" + a.user: 1, "--credential=nobody": 0, "--state=held": 0, "--recipient=@elsewhere.example": 1,
		"--sender=sender@" + a.domain: 1, "--sender=<>": 0, "--older-than=1h": 0, "--newer-than=1h": 1,
	} {
		if got := q.list(filter); len(got) != want {
			t.Errorf("list %s found %d messages, want %d", filter, len(got), want)
		}
	}
	q.fails(queuecli.ExitUsage, "list", "--state=lost")

	// show: envelope, state per recipient and the header block, never the body.
	text := q.ok("show", held)
	for _, want := range []string{"Subject: test", "Received: from", "451 4.2.0", a.user, heldRcpt} {
		if !strings.Contains(text, want) {
			t.Errorf("show does not show %q:\n%s", want, text)
		}
	}
	if d := q.show(held); !strings.Contains(d.Headers, "Subject: test") || strings.Contains(text+d.Headers, "never shown") {
		t.Errorf("show -o json headers:\n%s", d.Headers)
	}

	// hold: retry --all leaves it alone, and a message queued later is delivered
	// while it is not attempted, though its next hop would now take it.
	if out := q.ok("hold", held, "--reason", "checking with the customer"); !strings.Contains(out, "held") {
		t.Errorf("hold said %q", out)
	}
	logged := fmt.Sprintf(`"command":"hold","queue_id":%q,"peer_uid":%d`, held, os.Getuid())
	if logs := f.logs.String(); !strings.Contains(logs, logged) || !strings.Contains(logs, `"reason":"checking with the customer"`) {
		t.Errorf("the relay did not log who held %s and why (%s)", held, logged)
	}
	sink.RejectRcpt(heldRcpt, nil)
	var res queueadmin.Result
	q.decode(q.ok("retry", "--all", "-o", "json"), &res)
	if res.Counts == nil || res.Counts.Held != 1 || res.Counts.Retried != 0 {
		t.Errorf("retry --all = %+v, want the held message left alone", res)
	}
	later := submitTo(t, f, a, laterRcpt)
	waitFor(t, "the later message to be delivered", func() bool { return sink.RcptCount(laterRcpt) == 1 })
	if n := sink.RcptCount(heldRcpt); n != 1 {
		t.Errorf("the next hop saw %d RCPTs for the held message, want only its first attempt's", n)
	}
	if d := q.show(held); d.State != queueadmin.StateHeld || d.Attempts != 1 {
		t.Errorf("held message = %+v", d.Message)
	}

	// release, then retry: delivered, exactly once.
	if out := q.ok("release", held); !strings.Contains(out, "released") {
		t.Errorf("release said %q", out)
	}
	if out := q.ok("retry", held); !strings.Contains(out, "due now") {
		t.Errorf("retry said %q", out)
	}
	waitFor(t, "the released message to leave the queue", func() bool {
		return len(q.list("--recipient", heldRcpt)) == 0 && len(q.list("--recipient", laterRcpt)) == 0
	})
	if n := countTo(sink, heldRcpt); n != 1 {
		t.Errorf("the released message was delivered %d times, want 1 (later: %s)", n, later)
	}

	// delete: gone, and nobody is told.
	deleted := submitTo(t, f, a, deletedRcpt)
	q.waitDeferred(deleted)
	if out := q.ok("delete", deleted, "--reason", "sent twice"); !strings.Contains(out, "deleted") {
		t.Errorf("delete said %q", out)
	}
	q.fails(queuecli.ExitNoInput, "show", deleted)
	q.fails(queuecli.ExitNoInput, "hold", deleted)

	// bounce: the sender's server gets a DSN for the pending recipient.
	bounced := submitTo(t, f, a, bouncedRcpt)
	q.waitDeferred(bounced)
	if out := q.ok("bounce", bounced, "--reason", "spam run"); !strings.Contains(out, "bounce to its sender is queued") {
		t.Errorf("bounce said %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := senderMX.Wait(ctx, func(m testkit.Message) bool { return bytes.Contains(m.Data, []byte(bouncedRcpt)) })
	if err != nil {
		t.Fatal(err)
	}
	if dsn.From != "" || !bytes.Contains(dsn.Data, []byte("Action: failed")) || bytes.Contains(dsn.Data, []byte("spam run")) {
		t.Errorf("the bounce from %q:\n%s", dsn.From, dsn.Data)
	}
	if n := len(senderMX.Messages()); n != 1 {
		t.Errorf("the sender's server got %d messages, want only the bounce (a delete tells nobody)", n)
	}

	// A message being delivered: hold is refused with "try again", retry has nothing to do.
	release := sink.HoldData()
	busy := submitTo(t, f, a, busyRcpt)
	waitFor(t, "the delivery to reach DATA", func() bool { return sink.Held() == 1 })
	if errs := q.fails(queuecli.ExitTempFail, "hold", busy); !strings.Contains(errs, "being delivered") {
		t.Errorf("hold of a message in delivery said %q", errs)
	}
	if out := q.ok("retry", busy); !strings.Contains(out, "being delivered") {
		t.Errorf("retry of a message in delivery said %q", out)
	}
	release()
	waitFor(t, "the busy message to be delivered", func() bool { return countTo(sink, busyRcpt) == 1 })

	// Stopped, the relay takes its socket with it: the CLI finds no relay.
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket is still there after the relay stopped: %v", err)
	}
	if errs := q.fails(queuecli.ExitUnavailable, "list"); !strings.Contains(errs, "no relay answers") {
		t.Errorf("list without a relay said %q", errs)
	}
}

func countTo(s *testkit.Server, rcpt string) int {
	n := 0
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if to == rcpt {
				n++
			}
		}
	}
	return n
}

// The exit codes are the process's: main passes on the command's.
func TestQueueCommandExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	noRelay := t.TempDir()
	for name, c := range map[string]struct {
		args []string
		code int
	}{
		"no relay runs on the spool":   {[]string{"list", "--spool-dir", noRelay}, queuecli.ExitUnavailable},
		"an unknown subcommand":        {[]string{"flush"}, queuecli.ExitUsage},
		"a command without its id":     {[]string{"hold", "--spool-dir", noRelay}, queuecli.ExitUsage},
		"an unknown flag":              {[]string{"list", "--colour"}, queuecli.ExitUsage},
		"help is not an error":         {[]string{"list", "-h"}, 0},
		"retry needs an id or --all":   {[]string{"retry", "--spool-dir", noRelay}, queuecli.ExitUsage},
		"retry takes not both of them": {[]string{"retry", "X", "--all", "--spool-dir", noRelay}, queuecli.ExitUsage},
	} {
		out, err := exec.Command(bin, append([]string{"queue"}, c.args...)...).CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Errorf("%s: postwarden queue %q exited %d, want %d:\n%s", name, c.args, code, c.code, out)
		}
	}
}
