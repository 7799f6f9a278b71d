package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/queueadmin"
	"github.com/postwarden/postwarden/relay/internal/queuecli"
)

// withAdminSocket turns on the admin socket where the relay command puts it by
// default: in the spool folder.
func withAdminSocket(c *Config) { c.AdminSocket = DefaultAdminSocket(c.SpoolDir) }

// queueCLI runs `postwarden queue` in-process, the code path of the command itself,
// against one socket.
type queueCLI struct {
	t      *testing.T
	socket string
}

// run runs the command with args and returns its output and exit code.
func (q queueCLI) run(args ...string) (stdout, stderr string, code int) {
	q.t.Helper()
	var out, errs bytes.Buffer
	err := queuecli.Run(context.Background(), append(args, "--socket", q.socket), &out, &errs)
	var exit *queuecli.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.Code
		errs.WriteString(err.Error())
	default:
		q.t.Fatalf("postwarden queue %q: an error without an exit code: %v", args, err)
	}
	return out.String(), errs.String(), code
}

// ok runs the command, fails the test unless it exits 0, and returns its output.
func (q queueCLI) ok(args ...string) string {
	q.t.Helper()
	out, errs, code := q.run(args...)
	if code != 0 {
		q.t.Fatalf("postwarden queue %q exited %d: %s", args, code, errs)
	}
	return out
}

// fails runs the command and fails the test unless it exits with code.
func (q queueCLI) fails(code int, args ...string) string {
	q.t.Helper()
	_, errs, got := q.run(args...)
	if got != code {
		q.t.Fatalf("postwarden queue %q exited %d (%s), want %d", args, got, errs, code)
	}
	return errs
}

// list runs list -o json with filters and parses what it prints.
func (q queueCLI) list(filters ...string) []queueadmin.Message {
	q.t.Helper()
	var msgs []queueadmin.Message
	q.decode(q.ok(append([]string{"list", "-o", "json"}, filters...)...), &msgs)
	return msgs
}

func (q queueCLI) show(id string) queueadmin.Detail {
	q.t.Helper()
	var d queueadmin.Detail
	q.decode(q.ok("show", id, "-o", "json"), &d)
	return d
}

func (q queueCLI) decode(out string, v any) {
	q.t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		q.t.Fatalf("the output is not JSON (%v):\n%s", err, out)
	}
}

func ids(msgs []queueadmin.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// submitTo sends one message from c's domain to rcpt and returns its queue id.
func submitTo(t *testing.T, f *fileRelay, c cred, rcpt string) string {
	t.Helper()
	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	id, err := send(cl, "sender@"+c.domain, rcpt, "the body, never shown")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitDeferred waits until list shows id deferred: its attempt has ended.
func (q queueCLI) waitDeferred(id string) {
	q.t.Helper()
	waitFor(q.t, id+" to be deferred", func() bool {
		return slices.Contains(ids(q.list("--state", queueadmin.StateDeferred)), id)
	})
}
