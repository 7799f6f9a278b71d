// Package tlscerttest issues certificates as PEM files and Secret data for tests of the
// relay's certificate loading, on top of testkit's throw-away CA.
package tlscerttest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/test/testkit"
)

// Issue returns a leaf certificate for names, signed by ca, as PEM.
func Issue(t testing.TB, ca *testkit.CA, names ...string) tlscert.Pair {
	t.Helper()
	return Encode(t, ca.Leaf(t, names...), names[0])
}

// Encode returns cert and its key as PEM.
func Encode(t testing.TB, cert tls.Certificate, name string) tlscert.Pair {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return tlscert.Pair{Name: name, CertPEM: chain, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})}
}

// WriteFiles writes p to dir/<base>.crt and dir/<base>.key, replacing them by rename as
// cert-manager's csi driver and most tools do, and returns the two paths.
func WriteFiles(t testing.TB, dir, base string, p tlscert.Pair) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	for path, data := range map[string][]byte{certFile: p.CertPEM, keyFile: p.KeyPEM} {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
