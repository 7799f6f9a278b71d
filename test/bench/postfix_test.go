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
// queue and data directories, smtpd on loopback, relaying everything to the sink for
// clients logged in with AUTH (PLAIN or LOGIN, after STARTTLS only: Cyrus SASL and a
// sasldb holding the relay's credential) and sending as their own address, its queue
// manager delivering as mail comes, at its defaults.
type postfixInstance struct {
	script string
	dir    string
	master int
	target *target
}

var (
	postfixOnce sync.Once
	postfixInst *postfixInstance
	postfixErr  error
)

// startPostfix starts the shared instance and empties its queue, so that no backlog is
// delivered during the next run, or skips the benchmark, saying why, when Postfix cannot
// be installed or run here.
func startPostfix(b *testing.B) *postfixInstance {
	b.Helper()
	s := startSharedSink(b)
	postfixOnce.Do(func() { postfixInst, postfixErr = launchPostfix(b, s) })
	err := postfixErr
	if err == nil {
		_, err = postfixInst.run("", "purge", postfixInst.dir)
	}
	if err != nil {
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
		_, _ = p.run("", "stop", dir)
		os.RemoveAll(dir)
	})
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	out, err := p.run(password, "start", dir, strconv.Itoa(port), strconv.Itoa(s.Port),
		filepath.Join(certs, "relay.crt"), filepath.Join(certs, "relay.key"), user, sender)
	if err != nil {
		return nil, err
	}
	if p.master, err = strconv.Atoi(strings.TrimSpace(out)); err != nil {
		return nil, fmt.Errorf("bench-postfix.sh start printed %q, not the master's pid", out)
	}
	p.target = &target{
		system: postfix, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), auth: true,
		tls:  &tls.Config{ServerName: name, RootCAs: roots},
		cpu:  func() time.Duration { return treeCPU(p.master) },
		rss:  func() float64 { return treePSSKiB(p.master) },
		sink: s,
	}
	return p, nil
}

// run runs the script with stdin; exit status 3 means Postfix cannot run here, for the
// reason the script gives.
func (p *postfixInstance) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{p.script}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// BenchmarkVersusPostfix runs each end-to-end load on the relay and then on Postfix, back
// to back, so that the shared machine's changing load weighs on both alike; the
// comparison table is made of these pairs, and of BenchmarkFixedRate's. Both deliver as
// they accept, as they are run: the relay's queue-only submission (--delivery=false)
// would be compared with a Postfix without its queue manager, which nobody runs, so the
// table has submission latency from these loads, to the 250, beside end-to-end latency.
func BenchmarkVersusPostfix(b *testing.B) {
	for _, l := range endToEndLoads {
		b.Run("endtoend/"+l.name()+"/system="+ours, func(b *testing.B) {
			compare(b, deliveringTarget(b), l)
		})
		b.Run("endtoend/"+l.name()+"/system="+postfix, func(b *testing.B) {
			compare(b, startPostfix(b).target, l)
		})
	}
}

// compare measures a closed-loop load for the comparison table.
func compare(b *testing.B, t *target, l load) {
	r := measure(b, t, l)
	record(resultKey{system: t.system, kind: l.kind(), size: l.size, conns: l.conns}, r)
}
