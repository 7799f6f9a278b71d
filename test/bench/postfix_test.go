package bench

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// postfixInstance is a private Postfix run by hack/bench-postfix.sh: its own config,
// queue and data directories, smtpd on loopback with STARTTLS, relaying everything to
// the sink. It accepts by client address (mynetworks), without SASL.
type postfixInstance struct {
	script string
	dir    string
	master int
	mode   string // "submit" (queue manager off) or "deliver"
	target *target
}

var (
	postfixOnce sync.Once
	postfixInst *postfixInstance
	postfixErr  error
)

// startPostfix starts the shared instance, or skips the benchmark, saying why, when
// Postfix cannot be installed or run here.
func startPostfix(b *testing.B, mode string) *postfixInstance {
	b.Helper()
	s := startSharedSink(b)
	postfixOnce.Do(func() { postfixInst, postfixErr = launchPostfix(b, s) })
	if postfixErr != nil {
		noteSkip(postfixErr.Error())
		b.Skip("postfix not measured: ", postfixErr)
	}
	if err := postfixInst.setMode(mode); err != nil {
		noteSkip(err.Error())
		b.Skip("postfix not measured: ", err)
	}
	return postfixInst
}

func launchPostfix(b *testing.B, s *sink) (*postfixInstance, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("the comparison runs on Linux only")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "hack", "bench-postfix.sh")
	certs, err := os.MkdirTemp("", "postwarden-bench-postfix-certs-")
	if err != nil {
		return nil, err
	}
	addCleanup(func() { os.RemoveAll(certs) })
	const name = "postfix.bench.example"
	roots := writeCert(b, certs, name)
	dir, err := os.MkdirTemp("", "postwarden-bench-postfix-")
	if err != nil {
		return nil, err
	}
	p := &postfixInstance{script: script, dir: dir}
	addCleanup(func() {
		_, _ = p.run("stop", dir)
		os.RemoveAll(dir)
	})
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	out, err := p.run("start", dir, strconv.Itoa(port), strconv.Itoa(s.port),
		filepath.Join(certs, "relay.crt"), filepath.Join(certs, "relay.key"))
	if err != nil {
		return nil, err
	}
	if p.master, err = strconv.Atoi(strings.TrimSpace(out)); err != nil {
		return nil, fmt.Errorf("bench-postfix.sh start printed %q, not the master's pid", out)
	}
	p.mode = "deliver"
	p.target = &target{
		system: postfix, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		tls:  &tls.Config{ServerName: name, RootCAs: roots},
		cpu:  func() time.Duration { return treeCPU(p.master) },
		rss:  func() float64 { return treePSSKiB(p.master) },
		sink: s,
	}
	return p, nil
}

// run runs the script; exit status 3 means Postfix cannot run here, for the reason the
// script gives.
func (p *postfixInstance) run(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{p.script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		reason := strings.TrimSpace(stderr.String())
		if reason == "" {
			reason = err.Error()
		}
		return "", fmt.Errorf("bench-postfix.sh %s: %s", args[0], reason)
	}
	return stdout.String(), nil
}

// setMode turns the queue manager off (submit: mail stays in the incoming queue, as the
// relay's does with --delivery=false) or on (deliver), and empties the queue so that no
// backlog is delivered during the next run.
func (p *postfixInstance) setMode(mode string) error {
	if p.mode != mode {
		if _, err := p.run("mode", p.dir, mode); err != nil {
			return err
		}
		want := mode == "deliver"
		for deadline := time.Now().Add(30 * time.Second); p.hasDaemon("qmgr") != want; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("postfix: qmgr running is %v after switching to %s mode", !want, mode)
			}
		}
		p.mode = mode
	}
	_, err := p.run("purge", p.dir)
	return err
}

func (p *postfixInstance) hasDaemon(comm string) bool {
	for _, c := range children(p.master) {
		if c.comm == comm {
			return true
		}
	}
	return false
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// BenchmarkPostfixSubmission: the load of BenchmarkSubmission on Postfix, its queue
// manager off so that accepted mail stays queued.
func BenchmarkPostfixSubmission(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			p := startPostfix(b, "submit")
			measure(b, p.target, load{conns: conns, size: smallMessage})
		})
	}
}

// BenchmarkPostfixEndToEnd: the load of BenchmarkEndToEnd on Postfix relaying to the
// sink as its relayhost.
func BenchmarkPostfixEndToEnd(b *testing.B) {
	for _, l := range endToEndLoads {
		b.Run(l.name(), func(b *testing.B) {
			p := startPostfix(b, "deliver")
			measure(b, p.target, l)
		})
	}
}
