package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Key is one usable signing key of a domain.
type Key struct {
	// Selector is the s= tag; Algorithm is snapshot.DKIMRSASHA256 or
	// snapshot.DKIMEd25519SHA256, and matches Signer's key.
	Selector, Algorithm string
	Signer              crypto.Signer
}

// minRSABits is the shortest RSA key the relay signs with: RFC 8301 forbids signing
// with less, and verifiers treat such signatures as failing.
const minRSABits = 1024

// Keyring is the usable DKIM keys of every managed domain, compiled from one snapshot
// and one set of relay secrets. It is immutable: share it freely between goroutines.
// The methods of a nil Keyring answer as one without keys.
type Keyring struct {
	// config is what the snapshot says, by domain, for WithSecrets to compile again.
	config map[string][]snapshot.DKIMKey
	keys   map[string][]Key
	// parsed caches each relay secret's key by name, so WithSecrets and a later
	// Compile parse only the keys whose PEM changed: an RSA key takes about 150 µs, a
	// long pause at every reload of a config with thousands of domains.
	parsed   map[string]parsedKey
	problems []string
}

// parsedKey is the outcome of parsing the PEM of one relay secret.
type parsedKey struct {
	pem    []byte
	signer crypto.Signer
	err    error
}

// Compile parses the keys of domains from secrets (relay secret name → key → value),
// reusing what prev (may be nil) already parsed from the same bytes. A key whose
// secret is missing or does not hold a usable key of its algorithm is left out: the
// domain's mail goes out without that signature, and Problems says why.
func Compile(domains []snapshot.Domain, secrets map[string]map[string][]byte, prev *Keyring) *Keyring {
	config := map[string][]snapshot.DKIMKey{}
	for _, d := range domains {
		if len(d.DKIM) > 0 {
			config[d.Name] = d.DKIM
		}
	}
	return compile(config, secrets, prev)
}

// WithSecrets compiles k's keys again from other relay secrets.
func (k *Keyring) WithSecrets(secrets map[string]map[string][]byte) *Keyring {
	if k == nil {
		return nil
	}
	return compile(k.config, secrets, k)
}

func compile(config map[string][]snapshot.DKIMKey, secrets map[string]map[string][]byte, prev *Keyring) *Keyring {
	k := &Keyring{config: config, keys: map[string][]Key{}, parsed: map[string]parsedKey{}}
	for domain, entries := range config {
		for _, e := range entries {
			signer, err := k.signer(e, secrets, prev)
			if err != nil {
				// The message names the secret and why, never any of its bytes.
				k.problems = append(k.problems, fmt.Sprintf("domain %s, DKIM selector %s (%s): %v",
					domain, e.Selector, e.Algorithm, err))
				continue
			}
			k.keys[domain] = append(k.keys[domain], Key{Selector: e.Selector, Algorithm: e.Algorithm, Signer: signer})
		}
	}
	slices.Sort(k.problems)
	return k
}

// signer returns the key of e from its relay secret, checked against e's algorithm.
func (k *Keyring) signer(e snapshot.DKIMKey, secrets map[string]map[string][]byte, prev *Keyring) (crypto.Signer, error) {
	data, ok := secrets[e.SecretName][snapshot.DKIMPrivateKeyKey]
	if !ok {
		return nil, fmt.Errorf("the relay secret %s or its %s is not loaded (yet)", e.SecretName, snapshot.DKIMPrivateKeyKey)
	}
	p, ok := k.parsed[e.SecretName]
	if !ok {
		if old, found := prev.cached(e.SecretName); found && bytes.Equal(old.pem, data) {
			p = old
		} else {
			p = parsedKey{pem: data}
			p.signer, p.err = parsePrivateKey(data)
		}
		k.parsed[e.SecretName] = p
	}
	if p.err != nil {
		return nil, fmt.Errorf("%s of the relay secret %s: %w", snapshot.DKIMPrivateKeyKey, e.SecretName, p.err)
	}
	switch key := p.signer.(type) {
	case *rsa.PrivateKey:
		if e.Algorithm != snapshot.DKIMRSASHA256 {
			return nil, fmt.Errorf("the relay secret %s holds an RSA key, not one for %s", e.SecretName, e.Algorithm)
		}
		if bits := key.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("the RSA key of the relay secret %s has %d bits, fewer than the %d RFC 8301 requires", e.SecretName, bits, minRSABits)
		}
	case ed25519.PrivateKey:
		if e.Algorithm != snapshot.DKIMEd25519SHA256 {
			return nil, fmt.Errorf("the relay secret %s holds an Ed25519 key, not one for %s", e.SecretName, e.Algorithm)
		}
	default:
		return nil, fmt.Errorf("the relay secret %s holds a %T key, which DKIM does not sign with", e.SecretName, key)
	}
	return p.signer, nil
}

func (k *Keyring) cached(secret string) (parsedKey, bool) {
	if k == nil {
		return parsedKey{}, false
	}
	p, ok := k.parsed[secret]
	return p, ok
}

// parsePrivateKey reads a PKCS #8 PEM block ("PRIVATE KEY"), the form the operator
// writes. Its errors never quote the data.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("is not PEM")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("is a PEM %q block, not a PKCS #8 \"PRIVATE KEY\"", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("is not a PKCS #8 private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("holds a %T key, which cannot sign", key)
	}
	return signer, nil
}

// Keys returns the usable keys of domain (lower case), nil when it has none.
func (k *Keyring) Keys(domain string) []Key {
	if k == nil {
		return nil
	}
	return k.keys[domain]
}

// Problems says, one line per key, why a key the snapshot names is not used. The lines
// name domains, selectors and secrets, never key material, so they may be logged.
func (k *Keyring) Problems() []string {
	if k == nil {
		return nil
	}
	return k.problems
}
