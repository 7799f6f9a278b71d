package testkit

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkDiscardSink measures the server as the benchmarks' sink uses it: no TLS, the
// body dropped, each message's Message-ID read in OnMessage; 4 KiB messages, one
// connection. It shows what the kit adds to each message against go-smtp alone.
func BenchmarkDiscardSink(b *testing.B) {
	var ids atomic.Int64
	s := Start(b, WithDiscard(), OnMessage(func(m Message) {
		if bytes.Contains(m.Data, []byte("Message-ID:")) {
			ids.Add(1)
		}
	}))
	benchSend(b, s.Addr)
	if ids.Load() != int64(b.N) {
		b.Fatalf("%d Message-IDs seen, want %d", ids.Load(), b.N)
	}
}

func benchSend(b *testing.B, addr string) {
	c, err := smtp.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := "Message-ID: <1@bench>\r\nSubject: x\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 51)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		if err := c.SendMail("a@a.example", []string{"b@b.example"}, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}
