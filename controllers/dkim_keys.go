package controllers

import (
	"cmp"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// generateDKIMKey makes a key pair of type t and returns the private key as a PKCS #8
// PEM block (what the relays load) and the TXT record that publishes its public half.
func generateDKIMKey(t relayv1alpha1.DKIMKeyType) (privatePEM []byte, record string, err error) {
	var key crypto.Signer
	switch t {
	case relayv1alpha1.DKIMKeyEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, "", fmt.Errorf("generating a %s DKIM key: %w", t, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("encoding the DKIM key: %w", err)
	}
	record, err = dkimRecord(key.Public())
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), record, nil
}

// dkimRecord is the TXT record of a public key (RFC 6376 3.6.1): an RSA key as its
// DER SubjectPublicKeyInfo, an Ed25519 key as its 32 bytes (RFC 8463 4.2).
func dkimRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("encoding the DKIM public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("DKIM key of type %T is not RSA or Ed25519", pub)
}

// dkimRecordFromPEM derives the record from a stored private key.
func dkimRecordFromPEM(privatePEM []byte) (string, error) {
	block, _ := pem.Decode(privatePEM)
	if block == nil {
		return "", fmt.Errorf("the DKIM key is not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parsing the DKIM key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return "", fmt.Errorf("DKIM key of type %T cannot sign", key)
	}
	return dkimRecord(signer.Public())
}

// dkimTags parses a tag=value list (RFC 6376 3.2), with whitespace removed from the
// values as a verifier does (a p= value may be folded).
func dkimTags(record string) map[string]string {
	tags := map[string]string{}
	for part := range strings.SplitSeq(record, ";") {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		tags[strings.TrimSpace(name)] = strings.Join(strings.Fields(value), "")
	}
	return tags
}

// sameDKIMKey reports whether a record found in DNS publishes the key of want: same
// key type (rsa when k= is absent) and the same p=. Other tags (t=, h=, n=) are the
// publisher's business.
func sameDKIMKey(found, want string) bool {
	f, w := dkimTags(found), dkimTags(want)
	if v, ok := f["v"]; ok && v != "DKIM1" {
		return false
	}
	return f["p"] != "" && f["p"] == w["p"] && strings.ToLower(cmp.Or(f["k"], "rsa")) == w["k"]
}
