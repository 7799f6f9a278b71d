// Package container tests the shipped binary in the conditions of the pods the chart
// describes: user 65532, nothing writable but its volumes, no HOME and no /tmp. The root
// it runs in holds what the image holds (the binary and a CA bundle), so a package whose
// init needs a writable folder kills the binary here as it would in a pod.
//
// The tests chroot, so they need root; `make test` runs as root in CI.
package container

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

// nonroot is the user and group of the image and of the chart's securityContext.
const nonroot = 65532

// spoolDir is the relay's volume, as the chart mounts it.
const spoolDir = "/var/spool/postwarden"

// podRoot is a root folder laid out as the image is, with the binary built from tags.
type podRoot struct {
	dir string
}

func newPodRoot(t *testing.T, tags string) podRoot {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running the binary as user 65532 in a chroot needs root")
	}
	dir := t.TempDir()
	// The image's files belong to root and are not writable by the user.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-tags", tags, "-o", filepath.Join(dir, "postwarden"), ".")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building postwarden: %v\n%s", err, out)
	}
	r := podRoot{dir: dir}
	if bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		r.write(t, "/etc/ssl/certs/ca-certificates.crt", bundle, 0o644, 0)
	}
	return r
}

// write puts a file into the root, owned by root, readable by group gid.
func (r podRoot) write(t *testing.T, name string, data []byte, mode os.FileMode, gid int) {
	t.Helper()
	path := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
}

// volume makes a folder the user may write, as a mounted volume is.
func (r podRoot) volume(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, nonroot, nonroot); err != nil {
		t.Fatal(err)
	}
}

// command runs /postwarden in the root as the image's user, with an empty environment
// but for env, as a container without HOME would.
func (r podRoot) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/postwarden", args...)
	cmd.Path = "/postwarden"
	cmd.Dir = "/"
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     r.dir,
		Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot},
	}
	return cmd
}

func TestVersionStartsAsNonRootWithoutWritableFolders(t *testing.T) {
	r := newPodRoot(t, "")
	out, err := r.command(t.Context(), nil, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("postwarden version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "postwarden ") {
		t.Fatalf("postwarden version printed %q", out)
	}
}

// The dev build links envtest, whose init creates a folder under $TMPDIR: it cannot start
// in a pod, which is why only `make run` builds it. This is the failure the split avoids,
// and it shows that the conditions here are a pod's.
func TestDevBuildDiesInAPodsConditions(t *testing.T) {
	r := newPodRoot(t, "dev")
	out, err := r.command(t.Context(), nil, "version").CombinedOutput()
	if err == nil {
		t.Fatalf("the dev build started in a read-only root as non-root; the pod conditions are not reproduced:\n%s", out)
	}
	if !strings.Contains(string(out), "permission denied") {
		t.Fatalf("the dev build failed for another reason than a folder it may not create: %v\n%s", err, out)
	}
}

func TestRelayStartsAsNonRootWithOnlyItsSpoolWritable(t *testing.T) {
	r := newPodRoot(t, "")
	r.volume(t, spoolDir)
	certPEM, keyPEM := selfSigned(t, "relay.test")
	r.write(t, "/etc/postwarden/tls/tls.crt", certPEM, 0o644, 0)
	r.write(t, "/etc/postwarden/tls/tls.key", keyPEM, 0o640, nonroot)
	example, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "examples", "relay-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, "/etc/postwarden/config.json", example, 0o644, 0)

	cmd := r.command(t.Context(), nil, "relay", "--log-format", "json",
		"--config", "/etc/postwarden/config.json",
		"--tls-cert", "/etc/postwarden/tls/tls.crt", "--tls-key", "/etc/postwarden/tls/tls.key",
		"--spool-dir", spoolDir, "--hostname", "relay.test",
		"--submission-listen", "127.0.0.1:0", "--inbound-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--delivery=false")
	p := start(t, cmd)
	addr := p.waitForLog(t, func(rec map[string]any) string {
		if rec["msg"] == "listening" && rec["listener"] == "http" {
			s, _ := rec["addr"].(string)
			return s
		}
		return ""
	})
	p.waitOK(t, "http://"+addr+"/readyz")
	p.terminate(t)
}

func TestOperatorStartsAsNonRootWithoutWritableFolders(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	r := newPodRoot(t, "")
	kubeconfig, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, "/var/run/kube/config", kubeconfig, 0o640, nonroot)
	probe := freeAddr(t)

	cmd := r.command(t.Context(), nil, "operator",
		"--kubeconfig", "/var/run/kube/config", "--namespace", "default", "--metrics-bind-address", "0", "--health-probe-bind-address", probe)
	p := start(t, cmd)
	p.waitOK(t, "http://"+probe+"/readyz")
	p.terminate(t)
}

// process is the binary running in the root, with its output kept for failures.
type process struct {
	cmd    *exec.Cmd
	lines  chan string
	out    *testenv.SyncBuffer
	exited chan error
}

func start(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Args, err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 1024), out: &testenv.SyncBuffer{}, exited: make(chan error, 1)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			_, _ = p.out.Write(append(sc.Bytes(), '\n'))
			select {
			case p.lines <- sc.Text():
			default: // nobody is waiting for lines any more
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		_ = pw.Close()
		p.exited <- err
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// waitForLog returns the first non-empty value match finds in the JSON log lines.
func (p *process) waitForLog(t *testing.T, match func(map[string]any) string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the process ended: %v\n%s", <-p.exited, p.out)
			}
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil {
				if v := match(rec); v != "" {
					return v
				}
			}
		case <-timeout:
			t.Fatalf("no matching log line in 30 s:\n%s", p.out)
		}
	}
}

// terminate sends SIGTERM, as the kubelet does, and expects a clean exit.
func (p *process) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit 60 s after SIGTERM\n%s", p.out)
	}
}

// waitOK polls url until it answers 200, as a readiness probe does.
func (p *process) waitOK(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err := testkit.Poll(ctx, 100*time.Millisecond, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not answer 200 in 60 s: %v\n%s", url, err, p.out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// selfSigned makes a certificate for name, for the relay's STARTTLS.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := testkit.EncodePEM(testkit.SelfSigned(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}
