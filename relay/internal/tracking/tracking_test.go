package tracking

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

func TestLines(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	cases := map[string]struct {
		log  func()
		want map[string]any
	}{
		"an empty list is an empty array, never null": {
			func() { (&Transaction{Event: Rejected}).Log(ctx, l) },
			map[string]any{"recipients": []any{}, "level": "INFO"},
		},
		"an abandoned transaction without recipients is debug": {
			func() { (&Transaction{Event: Abandoned}).Log(ctx, l) },
			map[string]any{"event": "abandoned", "level": "DEBUG"},
		},
		"one with a recipient is not": {
			func() { (&Transaction{Event: Abandoned, Recipients: []string{"a@b"}}).Log(ctx, l) },
			map[string]any{"level": "INFO", "recipients": []any{"a@b"}},
		},
		"a delay is in seconds to the millisecond": {
			func() { (&Outcome{Event: Deferred, Delay: 1500*time.Millisecond + 400*time.Microsecond}).Log(ctx, l) },
			map[string]any{"delay_seconds": 1.5, "remote_ip": ""},
		},
		"an address is written as text": {
			func() { (&Outcome{Event: Delivered, RemoteIP: netip.MustParseAddr("2001:db8::1")}).Log(ctx, l) },
			map[string]any{"remote_ip": "2001:db8::1", "msg": "message"},
		},
		"a notification is dsn_sent": {
			func() { (&Notification{Kind: DSNBounce}).Log(ctx, l) },
			map[string]any{"event": "dsn_sent", "dsn_kind": "bounce"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			buf.Reset()
			tc.log()
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("%v: %s", err, buf.Bytes())
			}
			for k, want := range tc.want {
				got, _ := json.Marshal(rec[k])
				if w, _ := json.Marshal(want); !bytes.Equal(got, w) {
					t.Errorf("%s = %s, want %s", k, got, w)
				}
			}
		})
	}
}

// The tracking lines are written on the hot path, once per message and recipient.
func BenchmarkLines(b *testing.B) {
	l := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx := context.Background()
	tx := Transaction{Event: Accepted, Listener: "submission", Session: "4947ce6f2c7b", ClientIP: "192.0.2.7",
		QueueID: "01M8WGGYKJK40GJVJ0", MessageID: "<20241105101502.4711@laptop.example.com>", SASLUser: "alice-relay",
		Sender: "sender@example.com", Recipients: []string{"bob@example.net"}, Direction: "outbound", Size: 4096,
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256"}
	out := Outcome{Event: Delivered, QueueID: tx.QueueID, SASLUser: tx.SASLUser, Sender: tx.Sender,
		Recipient: "bob@example.net", Direction: "outbound", Attempt: 1, Delay: time.Second, RemoteHost: "mx.example.net",
		RemoteIP: netip.MustParseAddr("192.0.2.25"), ReplyCode: 250, EnhancedCode: "2.0.0", Reply: "Ok: queued as 4XYZ",
		TLSVersion: "TLS1.3", TLSCipher: "TLS_AES_128_GCM_SHA256", TLSVerified: true, TLSPolicy: "default",
		TLSMode: "Opportunistic"}
	b.Run("accepted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tx.Log(ctx, l)
		}
	})
	b.Run("delivered", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out.Log(ctx, l)
		}
	})
}
