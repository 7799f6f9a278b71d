package bench

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/postwarden/postwarden/test/testkit"
)

// writeCert writes a certificate for name from a throw-away CA to dir/relay.crt and
// dir/relay.key, and returns a pool trusting the CA.
func writeCert(tb testing.TB, dir, name string) *x509.CertPool {
	tb.Helper()
	ca := testkit.NewCA(tb)
	certPEM, keyPEM, err := testkit.EncodePEM(ca.Leaf(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	for file, data := range map[string][]byte{"relay.crt": certPEM, "relay.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return ca.Pool()
}
