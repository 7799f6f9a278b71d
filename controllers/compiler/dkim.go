package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// DKIMSecretName is the Secret, in the relays' namespace, that holds the private key of
// one DKIM selector of a MailDomain. Like RouteSecretName it is derived from the
// MailDomain alone, so a tenant cannot point a relay at another tenant's key; the key
// type is part of it, so a selector re-added with another type gets a new key rather
// than the old one.
func DKIMSecretName(namespace, mailDomain, selector string, keyType relayv1alpha1.DKIMKeyType) string {
	sum := sha256.Sum256([]byte(namespace + "/" + mailDomain + "/" + selector + "/" + string(keyType)))
	return "postwarden-dkim-" + hex.EncodeToString(sum[:10])
}

// DKIMAlgorithm is the signing algorithm (the a= tag) of a key type.
func DKIMAlgorithm(t relayv1alpha1.DKIMKeyType) string {
	if t == relayv1alpha1.DKIMKeyEd25519 {
		return snapshot.DKIMEd25519SHA256
	}
	return snapshot.DKIMRSASHA256
}

// signingKeys keeps of keys those that md's spec still names, with the type and Secret
// it names, at most one per algorithm, in the spec's order of preference: a checker
// that lags behind a spec change can never make a relay sign with a selector the spec
// dropped, or with a key that is not the selector's.
func signingKeys(md *relayv1alpha1.MailDomain, keys []snapshot.DKIMKey) []snapshot.DKIMKey {
	if md.Spec.DKIM == nil || len(keys) == 0 {
		return nil
	}
	var out []snapshot.DKIMKey
	for _, sel := range md.Spec.DKIM.Selectors {
		want := snapshot.DKIMKey{Selector: sel.Name, Algorithm: DKIMAlgorithm(sel.KeyType),
			SecretName: DKIMSecretName(md.Namespace, md.Name, sel.Name, sel.KeyType)}
		if !slices.Contains(keys, want) || slices.ContainsFunc(out, func(k snapshot.DKIMKey) bool { return k.Algorithm == want.Algorithm }) {
			continue
		}
		out = append(out, want)
	}
	return out
}
