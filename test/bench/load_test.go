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
	case l.endToEnd:
		return "end to end"
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

// measure sends b.N messages from l.conns clients and reports throughput, latency, the
// server's CPU per message and its memory. Latency runs from the start of a message's
// submission (its connection, for perMessage) to its 250 after DATA, or, end to end, to
// its arrival at the sink; throughput counts to the last 250, or the last arrival.
func measure(b *testing.B, t *target, l load) {
	var track *tracker
	if l.endToEnd {
		track = newTracker(b.N)
		t.sink.track.Store(track)
		defer t.sink.track.Store(nil)
	}
	var next atomic.Int64
	latencies := make([][]time.Duration, l.conns)
	errs := make(chan error, l.conns)
	cpu0 := t.cpu()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range l.conns {
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
					if cl, err = t.login(); err != nil {
						errs <- err
						return
					}
				}
				var before func(string)
				if track != nil {
					before = func(id string) { track.sending(id, t0) }
				}
				if err := send(cl, l.size, before); err != nil {
					errs <- err
					return
				}
				if l.perMessage {
					_ = cl.Quit()
					cl = nil
				}
				latencies[i] = append(latencies[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	end := time.Now()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	all := slices.Concat(latencies...)
	if track != nil {
		var err error
		if all, end, err = track.wait(b.N, 2*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := t.cpu() - cpu0
	r := result{
		msgsPerSec: float64(b.N) / end.Sub(start).Seconds(),
		p50:        percentile(all, 0.50),
		p99:        percentile(all, 0.99),
		cpuPerMsg:  cpu / time.Duration(b.N),
		rssMiB:     t.rss() / 1024,
		n:          b.N,
	}
	record(resultKey{system: t.system, kind: l.kind(), size: l.size, conns: l.conns}, r)
	b.ReportMetric(r.msgsPerSec, "msgs/s")
	b.ReportMetric(ms(r.p50), "p50-ms")
	b.ReportMetric(ms(r.p99), "p99-ms")
	b.ReportMetric(ms(r.cpuPerMsg), "cpu-ms/msg")
	b.ReportMetric(r.rssMiB, "rss-MiB")
	if t.peak != nil {
		b.ReportMetric(t.peak()/1024, "peak-rss-MiB")
	}
	b.ReportMetric(0, "ns/op") // throughput is msgs/s: ns/op of a concurrent run misleads
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
