package bench

import (
	"bytes"
	"context"
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

	"github.com/postwarden/postwarden/test/testkit"
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
	out, err := p.run("start", dir, strconv.Itoa(port), strconv.Itoa(s.Port),
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
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := testkit.Poll(ctx, 50*time.Millisecond, func() error {
			if p.hasDaemon("qmgr") != want {
				return fmt.Errorf("postfix: qmgr running is %v after switching to %s mode", !want, mode)
			}
			return nil
		})
		if err != nil {
			return err
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

// comparedLoads are the loads both systems get: submission into the queue, and end to
// end through the sink.
var comparedLoads = append([]load{
	{conns: 1, size: smallMessage},
	{conns: 8, size: smallMessage},
	{conns: 32, size: smallMessage},
}, endToEndLoads...)

// BenchmarkVersusPostfix runs each load on the relay and then on Postfix, back to back,
// so that the shared machine's changing load weighs on both alike; the comparison table
// is made of these pairs. For submission Postfix's queue manager is off, so that mail
// stays queued as the relay's does with --delivery=false.
func BenchmarkVersusPostfix(b *testing.B) {
	for _, l := range comparedLoads {
		kind, mode := "submission", "submit"
		if l.endToEnd {
			kind, mode = "endtoend", "deliver"
		}
		b.Run(kind+"/"+l.name()+"/system="+ours, func(b *testing.B) {
			if !l.endToEnd {
				measure(b, startRelay(b).target(), l)
				return
			}
			r, s := startDeliveringRelay(b)
			t := r.target()
			t.sink = s
			measure(b, t, l)
		})
		b.Run(kind+"/"+l.name()+"/system="+postfix, func(b *testing.B) {
			measure(b, startPostfix(b, mode).target, l)
		})
	}
}
