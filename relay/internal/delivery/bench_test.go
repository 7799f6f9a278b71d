package delivery

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// BenchmarkEndToEnd queues messages from parallel goroutines into a real spool and
// measures until a loopback sink has every one of them: MX lookup on a loopback DNS
// server, SMTP with STARTTLS, the spool's fsyncs for the attempt, and removal.
func BenchmarkEndToEnd(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10} {
		for _, tlsOn := range []bool{false, true} {
			name := fmt.Sprintf("%dKiB/plaintext", size>>10)
			if tlsOn {
				name = fmt.Sprintf("%dKiB/starttls", size>>10)
			}
			b.Run(name, func(b *testing.B) { benchEndToEnd(b, size, tlsOn) })
		}
	}
}

func benchEndToEnd(b *testing.B, size int, tlsOn bool) {
	w := newWorld(b)
	opts := []testkit.Option{testkit.WithDiscard()}
	if tlsOn {
		opts = append(opts, testkit.WithCertificate(testkit.SelfSigned(b, "mx.dest.example")))
	}
	sink := w.mx("dest.example", "mx.dest.example", 10, opts...)
	sp, err := spool.Open(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	view, err := compiled.Build(&snapshot.Snapshot{APIVersion: snapshot.APIVersion}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	runner, err := NewRunner(RunnerOptions{
		Spool: sp, Client: w.client(), View: func() *compiled.View { return view },
		Hostname: "relay.test", Workers: 16, PerDestination: 16,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	defer func() { cancel(); <-done }()

	body := []byte("From: <a@a.example>\r\nTo: <b@dest.example>\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", size/78))
	env := spool.Envelope{Sender: "a@a.example", Recipients: []string{"b@dest.example"}, Direction: DirectionOutbound}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sp.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	sink.WaitMessages(b, b.N, 5*time.Minute)
	deadline := time.Now().Add(time.Minute)
	for sp.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n := len(sink.Messages()); n != b.N {
		b.Fatalf("sink has %d messages, want %d (duplicates?)", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkClient measures the SMTP side alone: parallel deliveries of one message to
// a loopback sink over pooled sessions, with no spool.
func BenchmarkClient(b *testing.B) {
	for _, size := range []int{4 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKiB/starttls", size>>10), func(b *testing.B) {
			w := newWorld(b)
			sink := w.mx("dest.example", "mx.dest.example", 10, testkit.WithDiscard(),
				testkit.WithCertificate(testkit.SelfSigned(b, "mx.dest.example")))
			c := w.client(func(o *ClientOptions) { o.MaxIdlePerHost = 8 })
			body := []byte("Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", size/78))
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res := c.Deliver(context.Background(), Request{
						Route: Route{Domain: "dest.example"}, Sender: "a@a.example",
						Recipients: []string{"b@dest.example"}, Body: bytes.NewReader(body), Size: int64(len(body)),
					})
					if res.Recipients[0].Outcome != Delivered {
						b.Errorf("delivery: %s", res.Recipients[0].Text())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			if n := len(sink.Messages()); n != b.N {
				b.Fatalf("sink has %d, want %d", n, b.N)
			}
		})
	}
}
