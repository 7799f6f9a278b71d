package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// testKey is a generated key with its PKCS #8 PEM and its DNS record.
type testKey struct {
	signer crypto.Signer
	pem    []byte
	record string // the TXT record's value: v=DKIM1; k=...; p=...
}

var (
	keysOnce         sync.Once
	rsaKey, edKey    testKey
	rsaKey2, edKey2  testKey
	errGeneratingKey error
)

// keys returns the package's test keys, generated once: an RSA key takes a while.
func keys(t testing.TB) (rsaA, edA, rsaB, edB testKey) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func(alg string) testKey {
			var s crypto.Signer
			var err error
			if alg == "rsa" {
				s, err = rsa.GenerateKey(rand.Reader, 2048)
			} else {
				_, s, err = ed25519.GenerateKey(rand.Reader)
			}
			if err != nil {
				errGeneratingKey = err
				return testKey{}
			}
			return newTestKey(s)
		}
		rsaKey, edKey, rsaKey2, edKey2 = gen("rsa"), gen("ed25519"), gen("rsa"), gen("ed25519")
	})
	if errGeneratingKey != nil {
		t.Fatal(errGeneratingKey)
	}
	return rsaKey, edKey, rsaKey2, edKey2
}

func newTestKey(s crypto.Signer) testKey {
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		panic(err)
	}
	k := testKey{signer: s, pem: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			panic(err)
		}
		k.record = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(spki)
	case ed25519.PublicKey:
		k.record = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	return k
}

// algorithm is the snapshot's name for k's algorithm.
func (k testKey) algorithm() string {
	if _, ok := k.signer.(*rsa.PrivateKey); ok {
		return snapshot.DKIMRSASHA256
	}
	return snapshot.DKIMEd25519SHA256
}

// records maps <selector>._domainkey.<domain> to a TXT value, for verify.
type records map[string]string

// verify checks every signature of msg with go-msgauth against recs, and returns the
// verifications (each with its Err) or the error that stopped it.
func verify(t testing.TB, msg string, recs records) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if v, ok := recs[name]; ok {
				return []string{v}, nil
			}
			return nil, fmt.Errorf("no TXT record for %s", name)
		},
	})
	if err != nil {
		t.Fatalf("verifying: %v", err)
	}
	return vs
}

// sign signs header+body with keys, writing the body in chunks of chunk bytes, and
// returns the signed message.
func sign(t testing.TB, domain string, keys []Key, header, body string, chunk int) string {
	t.Helper()
	ms, err := NewMessageSigner(domain, keys, []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	for b := []byte(body); len(b) > 0; {
		n := min(chunk, len(b))
		if _, err := ms.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	sigs, err := ms.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return sigs + header + body
}
