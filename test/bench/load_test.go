package bench

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message sizes, headers included.
const (
	smallMessage = 4 << 10
	largeMessage = 100 << 10
)

// target is an SMTP server under load: our relay, or Postfix.
type target struct {
	system string // ours or postfix
	addr   string
	tls    *tls.Config
	auth   bool // AUTH PLAIN after STARTTLS
	// cpu is the CPU time the server has used so far; rss its memory in KiB: the
	// resident set of our one process, the summed PSS of Postfix's daemons.
	cpu func() time.Duration
	rss func() float64
	// peak, if set, is the server's peak resident set in KiB.
	peak func() float64
	// sink, for end-to-end loads, is where the server delivers.
	sink *sink
}

// load is what the submitting clients do.
type load struct {
	conns int
	size  int
	// perMessage: a new connection, STARTTLS and AUTH for every message, instead of one
	// session per client that sends message after message.
	perMessage bool
	// endToEnd: latency runs until the sink has the message, and the run until the sink
	// has them all.
	endToEnd bool
}

func (l load) kind() string {
	switch {
	case l.endToEnd && l.perMessage:
		return endToEnd + ", connection per message"
	case l.endToEnd:
		return endToEnd
	case l.perMessage:
		return "submission, connection per message"
	}
	return "submission"
}

func (t *target) login() (*smtp.Client, error) {
	cl, err := smtp.DialStartTLS(t.addr, t.tls)
	if err != nil {
		return nil, err
	}
	if t.auth {
		if err := cl.Auth(sasl.NewPlainClient("", user, password)); err != nil {
			cl.Close()
			return nil, err
		}
	}
	return cl, nil
}

var (
	bodiesMu sync.Mutex
	bodies   = map[int][]byte{}
)

// body returns lines of text that, after headers of about 200 bytes, make a message of
// size bytes.
func body(size int) []byte {
	bodiesMu.Lock()
	defer bodiesMu.Unlock()
	if b, ok := bodies[size]; ok {
		return b
	}
	var sb strings.Builder
	line := strings.Repeat("x", 76) + "\r\n"
	for sb.Len()+len(line) <= size-200 {
		sb.WriteString(line)
	}
	bodies[size] = []byte(sb.String())
	return bodies[size]
}

var messageSeq atomic.Int64

// send submits one message with a fresh Message-ID and returns that ID.
func send(cl *smtp.Client, size int, before func(id string)) error {
	id := fmt.Sprintf("<%d.%d@bench.example>", time.Now().UnixNano(), messageSeq.Add(1))
	if before != nil {
		before(id)
	}
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
	header := "From: <" + sender + ">\r\nTo: <rcpt@elsewhere.example>\r\nSubject: bench\r\nMessage-ID: " + id +
		"\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n"
	if _, err := w.Write([]byte(header)); err != nil {
		return err
	}
	if _, err := w.Write(body(size)); err != nil {
		return err
	}
	return w.Close()
}

// measure sends b.N messages of load l to t in a closed loop, reports the figures and
// returns them.
func measure(b *testing.B, t *target, l load) result {
	r := run(b, t, l, 0)
	reportMetrics(b, t, l, r)
	return r
}

// run sends b.N messages from l.conns clients and returns throughput, latencies, the
// server's CPU per message and its memory. Throughput counts to the last 250, or, end to
// end, to the last arrival at the sink.
//
// With rate 0 the loop is closed: each client sends its next message as soon as the last
// has its 250, and a message's latencies run from the start of its submission (its
// connection, for perMessage). With a rate the loop is open: message i is due at
// start + i/rate, the first free client sends it (late, when none is free), and its
// latencies run from when it was due, so that a server falling behind is charged for the
// wait of the messages queued behind, which a closed loop would not send (coordinated
// omission).
//
// Clients that keep their session log in before the clock starts. Counted in their first
// message, the connections' TLS handshakes, all at once, were l.conns of b.N samples:
// 6% of a 500-message run at 32 connections, so its p99 measured the handshake burst,
// and moved with the run's length. What a connection costs is what perMessage measures.
func run(b *testing.B, t *target, l load, rate float64) result {
	var track *tracker
	if l.endToEnd {
		track = newTracker(b.N)
		t.sink.track.Store(track)
		defer t.sink.track.Store(nil)
	}
	clients := make([]*smtp.Client, l.conns)
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				_ = cl.Quit()
			}
		}
	}()
	if rate > 0 || !l.perMessage {
		for i := range clients {
			var err error
			if clients[i], err = t.login(); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	submitted := make([][]time.Duration, l.conns)
	errs := make(chan error, l.conns)
	cpu0 := t.cpu()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range l.conns {
		wg.Go(func() {
			for {
				n := next.Add(1) - 1
				if n >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
					time.Sleep(time.Until(t0))
				}
				if clients[i] == nil {
					var err error
					if clients[i], err = t.login(); err != nil {
						errs <- err
						return
					}
				}
				var before func(string)
				if track != nil {
					before = func(id string) { track.sending(id, t0) }
				}
				if err := send(clients[i], l.size, before); err != nil {
					errs <- err
					return
				}
				if l.perMessage {
					_ = clients[i].Quit()
					clients[i] = nil
				}
				submitted[i] = append(submitted[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	end := time.Now()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	r := result{submit: summarize(slices.Concat(submitted...)), n: b.N}
	if track != nil {
		all, last, err := track.wait(b.N, 2*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		r.endToEnd, end = summarize(all), last
	}
	b.StopTimer()
	r.msgsPerSec = float64(b.N) / end.Sub(start).Seconds()
	r.cpuPerMsg = (t.cpu() - cpu0) / time.Duration(b.N)
	r.rssMiB = t.rss() / 1024
	return r
}

// reportMetrics reports r as the benchmark's metrics: p50-ms and p99-ms are the load's
// latency, end to end where the load is, and submit-p99-ms then the latency to the 250.
func reportMetrics(b *testing.B, t *target, l load, r result) {
	lat := r.submit
	if l.endToEnd {
		lat = r.endToEnd
		b.ReportMetric(ms(r.submit.p99), "submit-p99-ms")
	}
	b.ReportMetric(r.msgsPerSec, "msgs/s")
	b.ReportMetric(ms(lat.p50), "p50-ms")
	b.ReportMetric(ms(lat.p99), "p99-ms")
	b.ReportMetric(ms(r.cpuPerMsg), "cpu-ms/msg")
	b.ReportMetric(r.rssMiB, "rss-MiB")
	if t.peak != nil {
		b.ReportMetric(t.peak()/1024, "peak-rss-MiB")
	}
	b.ReportMetric(0, "ns/op") // throughput is msgs/s: ns/op of a concurrent run misleads
}

// latencies are percentiles of one run's per-message latencies.
type latencies struct {
	p50, p90, p99, max time.Duration
}

func summarize(d []time.Duration) latencies {
	d = slices.Clone(d)
	slices.Sort(d)
	return latencies{p50: percentile(d, 0.50), p90: percentile(d, 0.90), p99: percentile(d, 0.99), max: percentile(d, 1)}
}

// percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
