package smtpd

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// requireTool finds a client program. In CI (CI=true) a missing tool fails the test, so
// the real-client coverage cannot silently disappear; locally it skips.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (apt-get install -y %s): %v", name, name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return path
}

func (e *testEnv) caFile(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, e.tls.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSwaksSubmission(t *testing.T) {
	swaks := requireTool(t, "swaks")
	e := newEnv(t, Submission)
	host, port, _ := strings.Cut(e.addr, ":")
	base := []string{
		"--server", host, "--port", port, "--ehlo", "swaks.test.example",
		"--tls", "--tls-verify", "--tls-ca-path", e.caFile(t), "--tls-sni", testHostname,
		"--auth", "PLAIN", "--auth-user", "alice-relay", "--auth-password", alicePassword,
		"--to", "friend@foreign.example", "--timeout", "30",
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(swaks, append(slices.Clone(base), args...)...).CombinedOutput()
		return string(out), err
	}

	out, err := run("--from", "alice@example.com", "--header", "Subject: swaks test")
	if err != nil || !strings.Contains(out, "250 2.0.0 OK: queued as ") {
		t.Fatalf("swaks failed (%v):\n%s", err, out)
	}
	id := strings.Fields(out[strings.Index(out, "queued as ")+len("queued as "):])[0]
	env, body := e.message(id)
	if env.Sender != "alice@example.com" || env.AuthUser != "alice-relay" || env.Recipients[0] != "friend@foreign.example" {
		t.Errorf("envelope = %+v", env)
	}
	if !strings.Contains(body, "(authenticated user alice-relay)") || !strings.Contains(body, "Subject: swaks test") {
		t.Errorf("queued body:\n%s", body)
	}

	out, err = run("--from", "alice@example.com", "--header", "From: ceo@bank.example")
	if err == nil || !strings.Contains(out, "553 5.7.1 From: address <ceo@bank.example>") {
		t.Fatalf("swaks with a forged From: was not refused (%v):\n%s", err, out)
	}
	out, err = run("--from", "app@relay.example")
	if err == nil || !strings.Contains(out, "553 5.7.1 Sender address <app@relay.example>") {
		t.Fatalf("swaks with a foreign sender was not refused (%v):\n%s", err, out)
	}
	// swaks --pipeline sends MAIL, RCPT and DATA as one group (RFC 2920).
	out, err = run("--from", "alice@example.com", "--pipeline")
	if err != nil || !strings.Contains(out, "250 2.0.0 OK: queued as ") {
		t.Fatalf("swaks --pipeline failed (%v):\n%s", err, out)
	}
	if n := e.spool.Len(); n != 2 {
		t.Errorf("spool holds %d messages, want 2", n)
	}
}

const pythonClient = `
import os, smtplib, ssl, sys
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

ctx = ssl.create_default_context(cafile=os.environ["CA"])
host, port = os.environ["ADDR"].rsplit(":", 1)
s = smtplib.SMTP(host, int(port), local_hostname="python.test.example", timeout=30)
s.ehlo()
if s.has_extn("auth"):
    sys.exit("AUTH advertised before STARTTLS")
s.starttls(context=ctx)  # verifies the IP SAN 127.0.0.1
s.ehlo()
try:
    s.login("alice-relay", "wrong")
    sys.exit("login with a wrong password succeeded")
except smtplib.SMTPAuthenticationError as e:
    print("bad-login", e.smtp_code, e.smtp_error.decode())
s.login("alice-relay", os.environ["PASSWORD"])
# The SMTP policy writes CRLF line endings; the default (LF) is refused as bare LF.
m = EmailMessage(policy=SMTP_POLICY)
m["From"] = "Alice <alice@example.com>"
m["To"] = "friend@foreign.example"
m["Subject"] = "python test"
m.set_content("Hello from smtplib.\n")
s.mail("alice@example.com")
s.rcpt("friend@foreign.example")
code, msg = s.data(m.as_bytes())
print("data", code, msg.decode())
try:
    s.sendmail("app@relay.example", ["friend@foreign.example"], m.as_bytes())
    sys.exit("foreign sender accepted")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
s.quit()
`

func TestPythonSmtplibSubmission(t *testing.T) {
	python := requireTool(t, "python3")
	e := newEnv(t, Submission)
	cmd := exec.Command(python, "-c", pythonClient)
	cmd.Env = append(os.Environ(), "CA="+e.caFile(t), "ADDR="+e.addr, "PASSWORD="+alicePassword)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python client failed (%v):\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 ||
		lines[0] != "bad-login 535 5.7.8 Authentication credentials invalid" ||
		!strings.HasPrefix(lines[1], "data 250 2.0.0 OK: queued as ") ||
		!strings.HasPrefix(lines[2], "refused 553 5.7.1 Sender address <app@relay.example> is not allowed") {
		t.Fatalf("python client output:\n%s", out)
	}
	id := strings.TrimPrefix(lines[1], "data 250 2.0.0 OK: queued as ")
	env, body := e.message(id)
	if env.Sender != "alice@example.com" || env.AuthUser != "alice-relay" {
		t.Errorf("envelope = %+v", env)
	}
	if !strings.Contains(body, "Hello from smtplib.") || !strings.Contains(body, "with ESMTPSA") {
		t.Errorf("queued body:\n%s", body)
	}
}
