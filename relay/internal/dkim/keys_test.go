package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"unsafe"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// shortRSAKey is a 512-bit RSA key (PKCS #8), which RFC 8301 forbids signing with.
const shortRSAKey = `-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAyjPs++sYWzXTL8NL
K3QVMcki/o6uxe9x3IzAOPNaHgnuv55ChqA/J3rUTAXYZeAOUNhZgiidB8y5vtA5
ELIvhwIDAQABAkASjIjk40AsvddNvmCa798x3f2z1Gr8BWcwkEjh8JEHyD92buyy
zKYVWBWkVdyl64mDUcy4C/jzDAiszaD7JIuhAiEA/xcjlYhxH2yIguhgTlrS0wPj
TCIXcdR6+to7CUNfryMCIQDK7IIJaBHKT+O2i4YoSQrfCFhZxeSAPCJoKUve3USW
TQIhAOQG8zBAf57vjjg3MZ/ZYIxw9UahUwPWRPjpC80EBQyxAiAY5cXas5sjMIQm
/J18SeH8lYCJmz87AKXUE+UMNifZLQIhALdNrWQRlRDFjwlgzQ+U5DLuDuQB0tYF
9Ha8kbiGlYiz
-----END PRIVATE KEY-----`

func domainWith(keys ...snapshot.DKIMKey) []snapshot.Domain {
	return []snapshot.Domain{{Name: "example.com", DKIM: keys}, {Name: "unsigned.example"}}
}

func secretOf(pem []byte) map[string][]byte {
	return map[string][]byte{snapshot.DKIMPrivateKeyKey: pem}
}

func TestCompile(t *testing.T) {
	rsaA, edA, _, _ := keys(t)
	rsaEntry := snapshot.DKIMKey{Selector: "r1", Algorithm: snapshot.DKIMRSASHA256, SecretName: "dkim-rsa"}
	edEntry := snapshot.DKIMKey{Selector: "e1", Algorithm: snapshot.DKIMEd25519SHA256, SecretName: "dkim-ed"}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaA.signer.(*rsa.PrivateKey))})
	tests := map[string]struct {
		entries   []snapshot.DKIMKey
		secrets   map[string]map[string][]byte
		selectors []string // the usable keys of example.com, in order
		problem   string   // part of the one problem reported, "" for none
	}{
		"an RSA and an Ed25519 key are both usable, in the snapshot's order": {
			entries:   []snapshot.DKIMKey{edEntry, rsaEntry},
			secrets:   map[string]map[string][]byte{"dkim-rsa": secretOf(rsaA.pem), "dkim-ed": secretOf(edA.pem)},
			selectors: []string{"e1", "r1"},
		},
		"a PEM without its final newline is read (the secrets folder trims it)": {
			entries:   []snapshot.DKIMKey{edEntry},
			secrets:   map[string]map[string][]byte{"dkim-ed": secretOf([]byte(strings.TrimRight(string(edA.pem), "\n")))},
			selectors: []string{"e1"},
		},
		"a secret the relay does not have leaves the other key in use": {
			entries:   []snapshot.DKIMKey{edEntry, rsaEntry},
			secrets:   map[string]map[string][]byte{"dkim-ed": secretOf(edA.pem)},
			selectors: []string{"e1"},
			problem:   "domain example.com, DKIM selector r1 (rsa-sha256): the relay secret dkim-rsa or its private.pem is not loaded",
		},
		"a secret without private.pem is not loaded": {
			entries: []snapshot.DKIMKey{rsaEntry},
			secrets: map[string]map[string][]byte{"dkim-rsa": {"key.pem": rsaA.pem}},
			problem: "private.pem is not loaded",
		},
		"a secret that is not PEM": {
			entries: []snapshot.DKIMKey{rsaEntry},
			secrets: map[string]map[string][]byte{"dkim-rsa": secretOf([]byte("not a key"))},
			problem: "private.pem of the relay secret dkim-rsa: is not PEM",
		},
		"a PKCS #1 key is not the PKCS #8 the operator writes": {
			entries: []snapshot.DKIMKey{rsaEntry},
			secrets: map[string]map[string][]byte{"dkim-rsa": secretOf(pkcs1)},
			problem: `is a PEM "RSA PRIVATE KEY" block`,
		},
		"an Ed25519 key named as the RSA key": {
			entries: []snapshot.DKIMKey{rsaEntry},
			secrets: map[string]map[string][]byte{"dkim-rsa": secretOf(edA.pem)},
			problem: "holds an Ed25519 key, not one for rsa-sha256",
		},
		"an RSA key named as the Ed25519 key": {
			entries: []snapshot.DKIMKey{edEntry},
			secrets: map[string]map[string][]byte{"dkim-ed": secretOf(rsaA.pem)},
			problem: "holds an RSA key, not one for ed25519-sha256",
		},
		"an RSA key shorter than RFC 8301 allows": {
			entries: []snapshot.DKIMKey{rsaEntry},
			secrets: map[string]map[string][]byte{"dkim-rsa": secretOf([]byte(shortRSAKey))},
			problem: "has 512 bits, fewer than the 1024",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			k := Compile(domainWith(tc.entries...), tc.secrets, nil)
			var got []string
			for _, key := range k.Keys("example.com") {
				got = append(got, key.Selector)
				if key.Signer == nil || (key.Algorithm == snapshot.DKIMRSASHA256) != strings.HasPrefix(key.Selector, "r") {
					t.Errorf("key %+v", key)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.selectors, ",") {
				t.Errorf("usable selectors %v, want %v", got, tc.selectors)
			}
			if k.Keys("unsigned.example") != nil || k.Keys("unmanaged.example") != nil {
				t.Error("a domain without DKIM keys has keys")
			}
			problems := k.Problems()
			switch {
			case tc.problem == "" && len(problems) != 0:
				t.Errorf("problems %q", problems)
			case tc.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0], tc.problem)):
				t.Errorf("problems %q, want one with %q", problems, tc.problem)
			}
			for _, p := range problems {
				for _, secret := range tc.secrets {
					if body := pemBody(secret[snapshot.DKIMPrivateKeyKey]); body != "" && strings.Contains(p, body[:16]) {
						t.Errorf("a problem quotes the key: %s", p)
					}
				}
			}
		})
	}
}

// pemBody is the first base64 line of a PEM block, or "".
func pemBody(data []byte) string {
	lines := strings.Split(string(data), "\n")
	if len(lines) < 2 || len(lines[1]) < 16 {
		return ""
	}
	return lines[1]
}

// WithSecrets parses again only what changed: the same bytes keep the same key.
func TestWithSecretsReusesUnchangedKeys(t *testing.T) {
	rsaA, edA, rsaB, _ := keys(t)
	domains := domainWith(
		snapshot.DKIMKey{Selector: "r1", Algorithm: snapshot.DKIMRSASHA256, SecretName: "dkim-rsa"},
		snapshot.DKIMKey{Selector: "e1", Algorithm: snapshot.DKIMEd25519SHA256, SecretName: "dkim-ed"})
	first := Compile(domains, map[string]map[string][]byte{"dkim-rsa": secretOf(rsaA.pem), "dkim-ed": secretOf(edA.pem)}, nil)
	rotated := first.WithSecrets(map[string]map[string][]byte{
		"dkim-rsa": secretOf(rsaB.pem), "dkim-ed": secretOf([]byte(string(edA.pem))), "other": {"x": []byte("y")}})
	a, b := first.Keys("example.com"), rotated.Keys("example.com")
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("keys %v then %v", a, b)
	}
	if !sameKey(a[1].Signer, b[1].Signer) {
		t.Error("the unchanged Ed25519 key was parsed again")
	}
	if sameKey(a[0].Signer, b[0].Signer) || b[0].Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(a[0].Signer.Public()) {
		t.Error("the RSA key rotated in the secret was not reloaded")
	}
	// A later snapshot (Compile with prev) reuses the parsed keys too.
	if again := Compile(domains, map[string]map[string][]byte{"dkim-rsa": secretOf(rsaB.pem), "dkim-ed": secretOf(edA.pem)}, rotated); !sameKey(again.Keys("example.com")[0].Signer, b[0].Signer) {
		t.Error("a new snapshot with the same secrets parsed the key again")
	}
	// A key whose secret is gone is dropped.
	if gone := rotated.WithSecrets(nil); len(gone.Keys("example.com")) != 0 || len(gone.Problems()) != 2 {
		t.Errorf("without secrets: keys %v, problems %q", gone.Keys("example.com"), gone.Problems())
	}
}

// sameKey reports whether a and b are the same parsed key, not merely equal ones.
func sameKey(a, b crypto.Signer) bool {
	switch a := a.(type) {
	case *rsa.PrivateKey:
		return a == b
	case ed25519.PrivateKey:
		b, ok := b.(ed25519.PrivateKey)
		return ok && unsafe.SliceData(a) == unsafe.SliceData(b)
	}
	return false
}

func TestNilKeyringHasNoKeys(t *testing.T) {
	var k *Keyring
	if k.Keys("example.com") != nil || k.Problems() != nil || k.WithSecrets(nil) != nil {
		t.Error("a nil Keyring has keys")
	}
}
