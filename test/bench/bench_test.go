package bench

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/snapshot"
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

var (
	relayOnce sync.Once
	relay     *relayProcess
	relayErr  error
)

// startRelay builds postwarden and starts one relay shared by the benchmarks; it runs
// until the test binary exits (the process is killed by TestMain's cleanup).
func startRelay(b *testing.B) *relayProcess {
	b.Helper()
	relayOnce.Do(func() { relay, relayErr = launch(b) })
	if relayErr != nil {
		b.Fatal(relayErr)
	}
	return relay
}

func launch(b *testing.B) (*relayProcess, error) {
	dir, err := os.MkdirTemp("", "postwarden-bench-")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "postwarden")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building postwarden: %w\n%s", err, out)
	}

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
	cmd := exec.Command(bin, "relay", "--config", config, "--spool-dir", filepath.Join(dir, "spool"),
		"--hostname", hostname, "--submission-listen", "127.0.0.1:0", "--inbound-listen", "",
		"--http-listen", "127.0.0.1:0", "--max-connections-per-ip", "1000", "--log-format", "json",
		"--delivery=false")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrs := make(chan [2]string, 1)
	go func() {
		var got [2]string
		sc := bufio.NewScanner(stderr)
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
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + got[1] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("relay not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &relayProcess{cmd: cmd, addr: got[0], roots: roots}, nil
}

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for _, c := range slices.Backward(cleanups) {
		c()
	}
	os.Exit(code)
}

// message is a 4 KiB message.
var message = func() []byte {
	var sb strings.Builder
	sb.WriteString("From: <" + sender + ">\r\nTo: <rcpt@elsewhere.example>\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for sb.Len()+len(line) <= 4096 {
		sb.WriteString(line)
	}
	return []byte(sb.String())
}()

func (r *relayProcess) login() (*smtp.Client, error) {
	cl, err := smtp.DialStartTLS(r.addr, &tls.Config{ServerName: hostname, RootCAs: r.roots})
	if err != nil {
		return nil, err
	}
	if err := cl.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func sendOne(cl *smtp.Client) error {
	if err := cl.Mail(sender, nil); err != nil {
		return err
	}
	if err := cl.Rcpt("rcpt@elsewhere.example", nil); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(message); err != nil {
		return err
	}
	return w.Close()
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

// run sends b.N messages from conns goroutines and reports throughput, latency and RSS.
// Each goroutine logs in once and sends over its session, or, with perMessage, connects,
// does STARTTLS and AUTH for every message.
func run(b *testing.B, conns int, perMessage bool) {
	r := startRelay(b)
	var next atomic.Int64
	latencies := make([][]time.Duration, conns)
	errs := make(chan error, conns)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			var cl *smtp.Client
			defer func() {
				if cl != nil {
					_ = cl.Quit()
				}
			}()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if cl == nil {
					var err error
					if cl, err = r.login(); err != nil {
						errs <- err
						return
					}
				}
				if err := sendOne(cl); err != nil {
					errs <- err
					return
				}
				if perMessage {
					_ = cl.Quit()
					cl = nil
				}
				latencies[i] = append(latencies[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	cur, peak := r.rssKiB()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(cur/1024, "rss-MiB")
	b.ReportMetric(peak/1024, "peak-rss-MiB")
	b.ReportMetric(0, "ns/op") // throughput is msgs/s: ns/op of a concurrent run misleads
}

// BenchmarkSubmission: sessions that log in once and send message after message.
func BenchmarkSubmission(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { run(b, conns, false) })
	}
}

// BenchmarkSubmissionNewConnection: a new connection, STARTTLS and AUTH per message,
// as many applications send.
func BenchmarkSubmissionNewConnection(b *testing.B) {
	for _, conns := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { run(b, conns, true) })
	}
}
