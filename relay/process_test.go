package relay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/test/testkit"
)

// buildBinary builds the postwarden command into a temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	bin := filepath.Join(t.TempDir(), "postwarden")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building postwarden: %v\n%s", err, out)
	}
	return bin
}

// process is a relay running as a separate process.
type process struct {
	cmd              *exec.Cmd
	submission, http string
	exited           chan error
}

// terminate sends SIGTERM and expects a clean exit.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.exited; err != nil {
		t.Fatalf("relay exited with %v after SIGTERM", err)
	}
}

// startProcess runs `postwarden relay` and waits until it reports its addresses.
func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"relay", "--log-format", "json",
		"--submission-listen", "127.0.0.1:0", "--inbound-listen", "", "--http-listen", "127.0.0.1:0",
		"--delivery=false"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan error, 1)}
	addrs := make(chan [2]string, 1)
	go func() {
		var got [2]string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				switch rec.Listener {
				case "submission":
					got[0] = rec.Addr
				case "http":
					got[1] = rec.Addr
				}
				if got[0] != "" && got[1] != "" {
					addrs <- got
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case got := <-addrs:
		p.submission, p.http = got[0], got[1]
	case err := <-p.exited:
		t.Fatalf("relay exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("relay did not report its addresses")
	}
	testkit.Eventually(t, 30*time.Second, "the relay to be ready", func() error {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	return p
}

// A message acknowledged with 250 survives a SIGKILL right after the reply.
func TestAcceptedMessageSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	ca := testkit.NewCA(t)
	a, _ := creds(t)
	config, spoolDir := writeProcessConfig(t, ca, newSnapshot(t, certEntry, a))
	args := []string{"--config", config, "--spool-dir", spoolDir, "--hostname", relayName}

	p := startProcess(t, bin, args...)
	cl, err := login(p.submission, ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	id, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", "survive this")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	cl.Close()

	// The relay starts again on the same spool, and stops cleanly on SIGTERM.
	p = startProcess(t, bin, args...)
	p.terminate(t)

	s, err := spool.Open(spoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Get(id)
	if err != nil {
		t.Fatalf("message %s acknowledged before SIGKILL is not in the spool: %v", id, err)
	}
	if m.Envelope.AuthUser != a.user {
		t.Errorf("spooled envelope %+v", m.Envelope)
	}
	body, err := s.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	data, _ := io.ReadAll(body)
	if !containsBytes(data, "survive this") {
		t.Errorf("spooled body %q lacks the message text", data)
	}
}
