package compiler

import (
	"fmt"
	"slices"
	"strings"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// compileCredentials keeps every issued credential whose MailDomain is in the snapshot and
// whose allowed senders are registered addresses of the namespace. A username used twice
// stays with the older credential.
func (c *compilation) compileCredentials() {
	sorted := make([]Credential, len(c.in.Credentials))
	copy(sorted, c.in.Credentials)
	slices.SortFunc(sorted, func(a, b Credential) int { return older(a.Object, b.Object) })

	users := make(map[string]*relayv1alpha1.SMTPCredential, len(sorted))
	creds := make([]snapshot.Credential, 0, len(sorted))
	for _, cr := range sorted {
		obj := cr.Object
		v := c.verdict(KindSMTPCredential, obj)
		if cr.SecretMismatch {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "the credential Secret is not the one the operator issued with this login; delete it to issue a new password")
			continue
		}
		if cr.PasswordHash == "" || cr.Username == "" {
			reject(v, relayv1alpha1.ReasonSecretPending, "waiting for the credential Secret to be issued")
			continue
		}
		if cr.Username != strings.TrimSpace(cr.Username) || strings.ContainsAny(cr.Username, "\x00\r\n") {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "the credential Secret's username annotation is malformed")
			continue
		}
		if _, err := snapshot.ParsePasswordHash(cr.PasswordHash); err != nil {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "the credential Secret's password hash annotation is malformed; delete the Secret to issue a new password")
			continue
		}
		d := c.byObject[ObjectKey{KindMailDomain, obj.Namespace, obj.Spec.MailDomainRef.Name}]
		if d == nil {
			reject(v, relayv1alpha1.ReasonInvalidReference,
				"MailDomain %s does not exist in namespace %s or is not in the relay config", obj.Spec.MailDomainRef.Name, obj.Namespace)
			continue
		}
		if bad := c.unregisteredSenders(obj.Namespace, obj.Spec.AllowedSenders); len(bad) > 0 {
			reject(v, relayv1alpha1.ReasonInvalidReference,
				"allowedSenders %s are not users, functional accounts or aliases of a MailDomain in namespace %s",
				strings.Join(bad, ", "), obj.Namespace)
			continue
		}
		if first, taken := users[cr.Username]; taken {
			reject(v, relayv1alpha1.ReasonInvalidSpec, "username %s is already used by SMTPCredential %s", cr.Username, nsName(first))
			continue
		}
		users[cr.Username] = obj
		entry := snapshot.Credential{
			Username:       cr.Username,
			PasswordHash:   cr.PasswordHash,
			Domain:         d.entry.Name,
			AllowedSenders: slices.Sorted(slices.Values(obj.Spec.AllowedSenders)),
			Label:          obj.Spec.Label,
			Source:         ref(obj),
			Limits:         ResolveLimits(obj.Spec.Limits, d.obj.Spec.SendingLimits),
		}
		creds = append(creds, entry)
		d.verdict.Credentials++
		accept(v, fmt.Sprintf("username %s may send for %s", cr.Username, d.entry.Name))
		v.MailDomains = []string{d.entry.Name}
		v.Fingerprint = fingerprint(entry)
	}
	c.res.Snapshot.Credentials = creds
}

// unregisteredSenders returns the addresses that no accepted MailDomain of the namespace
// lists as a user, functional account or alias.
func (c *compilation) unregisteredSenders(namespace string, senders []string) []string {
	var bad []string
	for _, s := range senders {
		d := c.domains[snapshot.Domainpart(s)]
		if d == nil || d.obj.Namespace != namespace || !d.senders[s] {
			bad = append(bad, s)
		}
	}
	return bad
}
