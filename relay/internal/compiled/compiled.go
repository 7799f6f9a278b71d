// Package compiled is the relay's one compiled view of a config snapshot: the directory
// the SMTP sessions consult, the managed domains (with their own servers) and the TLS
// policy matcher that delivery routes by and discovery calls out under, the STARTTLS
// certificate set, the roots that verify delivery event endpoints, the domains' parsed
// DKIM keys, and the snapshot hash. The reloader
// builds one View per update and swaps it in whole; smtpd, delivery and discovery read
// that same View, never the raw snapshot, so nothing compiles a snapshot twice and a
// feature added here reaches every reader at once.
package compiled

import (
	"crypto/x509"

	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// View is immutable once built: share it freely between goroutines. The methods of a nil
// View answer as a relay that has loaded nothing: no domains, no certificates, the
// default TLS policy.
type View struct {
	hash string
	dir  *directory.Directory
	// tls are the snapshot's TLS policies; tlsErr says why they do not compile.
	tls    *tlspolicy.Matcher
	tlsErr error
	certs  *tlscert.Set
	// secrets are the relay secrets, by the name the snapshot gives them
	// (snapshot.Endpoint.AuthSecret, snapshot.Webhook.SecretName,
	// snapshot.DKIMKey.SecretName).
	secrets map[string]map[string][]byte
	// webhooks are the domains' delivery event endpoints, by domain name.
	webhooks map[string]*snapshot.Webhook
	// eventRoots verify the webhooks' certificates; nil: the system roots.
	eventRoots *x509.CertPool
	// relays is how many relay replicas share the credentials' sending limits (≥ 1).
	relays int
	// autoAddOutbound holds the discovery policies whose outbound senders become users.
	autoAddOutbound map[string]bool
	// dkim are the domains' DKIM keys, parsed from secrets.
	dkim *dkim.Keyring
}

// unusable is the policy of every lookup when the snapshot's TLS policies do not
// compile: it needs a certificate that nothing verifies, so delivery and callouts defer
// rather than ignore a policy.
var unusable = tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: x509.NewCertPool(), Source: "(unusable TLS policies)"}

// Build compiles s, which must have passed snapshot.Validate, into a View serving certs
// and reading the relay secrets the snapshot names from secrets (name → key → value).
// It fails when the directory cannot be built (see directory.Build). TLS policies that
// do not compile (a CA bundle without a certificate, which Validate does not parse) are
// no error: the View is built, every policy lookup answers a policy that nothing
// satisfies, and TLSErr says why.
func Build(s *snapshot.Snapshot, certs *tlscert.Set, secrets map[string]map[string][]byte) (*View, error) {
	return BuildFrom(nil, s, certs, secrets)
}

// BuildFrom is Build for the update that follows prev (may be nil): what prev parsed
// from relay secrets whose bytes did not change (DKIM keys) is reused, not parsed again.
func BuildFrom(prev *View, s *snapshot.Snapshot, certs *tlscert.Set, secrets map[string]map[string][]byte) (*View, error) {
	dir, err := directory.Build(s)
	if err != nil {
		return nil, err
	}
	v := &View{hash: s.Hash, dir: dir, certs: certs, secrets: secrets, autoAddOutbound: map[string]bool{},
		webhooks: map[string]*snapshot.Webhook{}, relays: max(s.Relays, 1)}
	for _, d := range s.Domains {
		if d.DeliveryEvents != nil {
			v.webhooks[d.Name] = d.DeliveryEvents
		}
	}
	v.dkim = dkim.Compile(s.Domains, secrets, prev.DKIM())
	v.tls, v.tlsErr = tlspolicy.Compile(s.TLSPolicies)
	for _, p := range s.DiscoveryPolicies {
		if p.AutoAddOutboundUsers {
			v.autoAddOutbound[p.Name] = true
		}
	}
	return v, nil
}

// WithSecrets returns a View that differs from v only in its certificates and relay
// secrets: an update that changed nothing else compiles nothing again.
func (v *View) WithSecrets(certs *tlscert.Set, secrets map[string]map[string][]byte) *View {
	next := *v
	next.certs, next.secrets = certs, secrets
	next.dkim = v.dkim.WithSecrets(secrets)
	return &next
}

// WithEventRoots returns a View that differs from v only in the roots that verify the
// delivery event endpoints' certificates (nil: the system roots). A View built from a
// snapshot has none: the relay sets them from its CA bundle on every update.
func (v *View) WithEventRoots(roots *x509.CertPool) *View {
	next := *v
	next.eventRoots = roots
	return &next
}

// EventRoots returns the pool that verifies the delivery event endpoints'
// certificates: the system roots and the relay's extra CAs; nil (the system roots
// alone) when the relay has none, and for a nil View.
func (v *View) EventRoots() *x509.CertPool {
	if v == nil {
		return nil
	}
	return v.eventRoots
}

// DKIM returns the managed domains' usable DKIM keys; nil (no keys) for a nil View.
// Its Problems say which keys the snapshot names are not usable, and why.
func (v *View) DKIM() *dkim.Keyring {
	if v == nil {
		return nil
	}
	return v.dkim
}

// RouteCredentials returns what a hop whose snapshot.Endpoint names secret logs in
// with; false when the relay does not have them (yet) or either is empty.
func (v *View) RouteCredentials(secret string) (outbound.Credentials, bool) {
	if v == nil || secret == "" {
		return outbound.Credentials{}, false
	}
	data := v.secrets[secret]
	user, pass := data["username"], data["password"]
	if len(user) == 0 || len(pass) == 0 {
		return outbound.Credentials{}, false
	}
	return outbound.Credentials{Username: string(user), Password: string(pass)}, true
}

// DeliveryEvents returns the delivery event endpoint of managed domain domain and the
// HMAC key its events are signed with; a nil key when the relay does not have it (yet),
// and a nil Webhook when the domain sends no events.
func (v *View) DeliveryEvents(domain string) (*snapshot.Webhook, []byte) {
	if v == nil {
		return nil, nil
	}
	w := v.webhooks[domain]
	if w == nil {
		return nil, nil
	}
	key := v.secrets[w.SecretName][snapshot.WebhookSecretKey]
	if len(key) == 0 {
		return w, nil
	}
	return w, key
}

// Relays is how many relay replicas share the credentials' sending limits, at least 1:
// each enforces its share (relay/internal/sendlimit).
func (v *View) Relays() int {
	if v == nil {
		return 1
	}
	return v.relays
}

// Hash is the hash of the snapshot compiled, or "" for a nil View.
func (v *View) Hash() string {
	if v == nil {
		return ""
	}
	return v.hash
}

// Directory is the directory the SMTP sessions pin; nil for a nil View.
func (v *View) Directory() *directory.Directory {
	if v == nil {
		return nil
	}
	return v.dir
}

// Certificates is the STARTTLS certificate set; nil for a nil View.
func (v *View) Certificates() *tlscert.Set {
	if v == nil {
		return nil
	}
	return v.certs
}

// Domain returns the managed domain name (lower case), or nil. Its InboundDelivery is
// the domain's own server, nil for an outbound-only domain.
func (v *View) Domain(name string) *directory.Domain {
	if v == nil {
		return nil
	}
	return v.dir.Domain(name)
}

// TLSErr says why the snapshot's TLS policies do not compile, or is nil.
func (v *View) TLSErr() error {
	if v == nil {
		return nil
	}
	return v.tlsErr
}

// TLSPolicy returns the policy for mail of managed domain domain travelling in direction
// (snapshot.DirectionOutbound or DirectionInbound) to destination, as
// tlspolicy.Matcher.Lookup does; when the policies do not compile, a policy that nothing
// satisfies; for a nil View, the default policy.
func (v *View) TLSPolicy(direction, domain, destination string) tlspolicy.Policy {
	switch {
	case v == nil:
		return tlspolicy.Default
	case v.tlsErr != nil:
		return unusable
	}
	return v.tls.Lookup(direction, domain, destination)
}

// InboundTLS returns the Inbound TLS policy of a managed domain: how delivery and
// verification callouts speak to the domain's own server.
func (v *View) InboundTLS(domain string) tlspolicy.Policy {
	return v.TLSPolicy(snapshot.DirectionInbound, domain, domain)
}

// AutoAddsOutbound reports whether the discovery policy name makes the unknown senders
// of sending servers users.
func (v *View) AutoAddsOutbound(name string) bool {
	return v != nil && v.autoAddOutbound[name]
}
