package dkim

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSign is the cost of signing one message as smtpd does: the header section,
// then the body in the spool's 32 KiB reads, then the signature. It is the CPU a signed
// message adds to the data path, before the 250.
func BenchmarkSign(b *testing.B) {
	rsaA, edA, _, _ := keys(b)
	rsaKey := Key{Selector: "rsa1", Algorithm: rsaA.algorithm(), Signer: rsaA.signer}
	edKey := Key{Selector: "ed1", Algorithm: edA.algorithm(), Signer: edA.signer}
	for _, size := range []int{4 << 10, 100 << 10} {
		body := benchBody(size - len(testHeader))
		for _, k := range []struct {
			name string
			keys []Key
		}{{"rsa2048", []Key{rsaKey}}, {"ed25519", []Key{edKey}}, {"ed25519+rsa2048", []Key{edKey, rsaKey}}} {
			b.Run(fmt.Sprintf("%s/%dKiB", k.name, size>>10), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					ms, err := NewMessageSigner("example.com", k.keys, []byte(testHeader))
					if err != nil {
						b.Fatal(err)
					}
					for rest := body; len(rest) > 0; {
						n := min(32<<10, len(rest))
						_, _ = ms.Write(rest[:n])
						rest = rest[n:]
					}
					if _, err := ms.Finish(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchBody is a plain-text body of about n bytes in lines of 76 characters, as
// quoted-printable and base64 parts look.
func benchBody(n int) []byte {
	line := strings.Repeat("abcdefghij ", 7)[:76] + "\r\n"
	return []byte(strings.Repeat(line, n/len(line)+1)[:n])
}
