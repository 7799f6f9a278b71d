package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

const (
	hostname = "relay.bench.example"
	user     = "bench-relay"
	password = "bench-password-0123456789abcdef"
	sender   = "sender@bench.example"
)

// relayProcess is `postwarden relay` running on loopback.
type relayProcess struct {
	cmd   *exec.Cmd
	addr  string
	roots *x509.CertPool
}

// target is the relay as the load generator sees it.
func (r *relayProcess) target() *target {
	pid := r.cmd.Process.Pid
	return &target{
		system: ours, addr: r.addr, auth: true,
		tls:  &tls.Config{ServerName: hostname, RootCAs: r.roots},
		cpu:  func() time.Duration { return processCPU(pid) },
		rss:  func() float64 { cur, _ := r.rssKiB(); return cur },
		peak: func() float64 { _, peak := r.rssKiB(); return peak },
	}
}

// rssKiB returns the relay's current and peak resident set size.
func (r *relayProcess) rssKiB() (cur, peak float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, value, _ := strings.Cut(line, ":")
		v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		switch name {
		case "VmRSS":
			cur = v
		case "VmHWM":
			peak = v
		}
	}
	return cur, peak
}

var (
	submitOnce, deliverOnce   sync.Once
	submitRelay, deliverRelay *relayProcess
	submitErr, deliverErr     error
)

// startRelay builds postwarden and starts one relay, shared by the benchmarks, that keeps
// what it accepts in its spool (--delivery=false); it runs until the test binary exits.
func startRelay(b *testing.B) *relayProcess {
	b.Helper()
	submitOnce.Do(func() { submitRelay, submitErr = launch(b, "--delivery=false") })
	if submitErr != nil {
		b.Fatal(submitErr)
	}
	return submitRelay
}

// startDeliveringRelay starts one relay, shared by the benchmarks, that delivers all mail
// through the sink as its smarthost, with a loopback resolver so it never asks the
// system's.
func startDeliveringRelay(b *testing.B) (*relayProcess, *sink) {
	b.Helper()
	s := startSharedSink(b)
	deliverOnce.Do(func() {
		// It answers NXDOMAIN to everything: with a smarthost the relay should not need
		// DNS at all, and Queries counts what it asked anyway.
		if benchDNS, deliverErr = testkit.NewDNSServer("127.0.0.1:0"); deliverErr != nil {
			return
		}
		addCleanup(func() { _ = benchDNS.Close() })
		args := []string{"--delivery=true", "--smarthost", s.Addr, "--dns-servers", benchDNS.Addr}
		// Extra flags, such as --delivery-per-destination=20, to try other settings.
		args = append(args, strings.Fields(os.Getenv("BENCH_RELAY_ARGS"))...)
		deliverRelay, deliverErr = launch(b, args...)
	})
	if deliverErr != nil {
		b.Fatal(deliverErr)
	}
	return deliverRelay, s
}

// deliveringTarget is the delivering relay as the load generator sees it, with the sink
// it delivers to.
func deliveringTarget(b *testing.B) *target {
	r, s := startDeliveringRelay(b)
	t := r.target()
	t.sink = s
	return t
}

var (
	sinkOnce   sync.Once
	sharedSink *sink
	sinkErr    error
	benchDNS   *testkit.DNS
)

func startSharedSink(b *testing.B) *sink {
	b.Helper()
	sinkOnce.Do(func() { sharedSink, sinkErr = startSink() })
	if sinkErr != nil {
		b.Fatal(sinkErr)
	}
	return sharedSink
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// build compiles postwarden once per test binary.
func build() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postwarden-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		addCleanup(func() { os.RemoveAll(dir) })
		_, file, _, _ := runtime.Caller(0)
		binary = filepath.Join(dir, "postwarden")
		cmd := exec.Command("go", "build", "-o", binary, ".")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building postwarden: %w\n%s", err, out)
		}
	})
	return binary, buildErr
}

func launch(b *testing.B, args ...string) (*relayProcess, error) {
	bin, err := build()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "postwarden-bench-")
	if err != nil {
		return nil, err
	}
	addCleanup(func() { os.RemoveAll(dir) })
	roots := writeCert(b, dir, hostname)
	hash, err := snapshot.HashPassword(password)
	if err != nil {
		return nil, err
	}
	s := &snapshot.Snapshot{
		APIVersion: snapshot.APIVersion,
		Domains: []snapshot.Domain{{Name: "bench.example", Source: snapshot.ObjectRef{Namespace: "bench", Name: "bench"},
			Users: []snapshot.User{{Address: sender}}}},
		Credentials: []snapshot.Credential{{Username: user, PasswordHash: hash, Domain: "bench.example",
			Source: snapshot.ObjectRef{Namespace: "bench", Name: user}}},
		Certificates: []snapshot.Certificate{{CertFile: "relay.crt", KeyFile: "relay.key"}},
	}
	data, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "relay.json")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"relay", "--config", config, "--spool-dir", filepath.Join(dir, "spool"),
		"--hostname", hostname, "--submission-listen", "127.0.0.1:0", "--inbound-listen", "",
		"--http-listen", "127.0.0.1:0", "--max-connections-per-ip", "1000", "--max-connection-rate-per-ip", "1000000", "--log-format", "json"}, args...)...)
	dieWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addCleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrs := make(chan [2]string, 1)
	go func() {
		var got [2]string
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				if rec.Listener == "submission" {
					got[0] = rec.Addr
				} else if rec.Listener == "http" {
					got[1] = rec.Addr
				}
				if got[0] != "" && got[1] != "" {
					addrs <- got
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var got [2]string
	select {
	case got = <-addrs:
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("relay did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testkit.Poll(ctx, 20*time.Millisecond, func() error { return readyz("http://" + got[1] + "/readyz") }); err != nil {
		return nil, fmt.Errorf("relay not ready: %w", err)
	}
	return &relayProcess{cmd: cmd, addr: got[0], roots: roots}, nil
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func addCleanup(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

// runCleanups stops what the benchmarks started, last first, once.
func runCleanups() {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for _, c := range slices.Backward(cleanups) {
		c()
	}
	cleanups = nil
}

func TestMain(m *testing.M) {
	// An interrupted run must still stop Postfix, which outlives us as a daemon.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		runCleanups()
		os.Exit(1)
	}()
	code := m.Run()
	printComparison(os.Stdout)
	runCleanups()
	os.Exit(code)
}

// BenchmarkSubmission: sessions that log in once and send message after message.
func BenchmarkSubmission(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			measure(b, startRelay(b).target(), load{conns: conns, size: smallMessage})
		})
	}
}

// BenchmarkSubmissionNewConnection: a new connection, STARTTLS and AUTH per message,
// as many applications send.
func BenchmarkSubmissionNewConnection(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			measure(b, startRelay(b).target(), load{conns: conns, size: smallMessage, perMessage: true})
		})
	}
}

// readyz returns nil when url answers 200.
func readyz(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
