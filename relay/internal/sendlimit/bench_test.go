package sendlimit

import (
	"strconv"
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// BenchmarkTransaction is what the limits add to one accepted message with one
// recipient: Begin at MAIL, AddRecipient at RCPT, Commit after DATA, spread over 1000
// credentials.
func BenchmarkTransaction(b *testing.B) {
	l := New(nil, func() int { return 2 })
	limits := &snapshot.Limits{MessagesPerWindow: 1 << 30, WindowSeconds: 600, MessagesPerDay: 1 << 30,
		RecipientsPerMessage: 100, RecipientsPerDay: 1 << 30}
	users := make([]string, 1000)
	for i := range users {
		users[i] = "app-" + strconv.Itoa(i) + "@example.com"
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		txn, refused := l.Begin(users[i%len(users)], snapshot.ObjectRef{Namespace: "mail", Name: "app"}, limits)
		if refused != None || txn.AddRecipient(1, limits) != None {
			b.Fatal("refused")
		}
		txn.Commit()
	}
}
