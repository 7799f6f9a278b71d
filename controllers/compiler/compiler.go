// Package compiler turns Postwarden's custom resources into one relay config snapshot.
// It is pure: no client, no clock, no randomness. The same input always gives the same
// snapshot bytes and hash. An object that cannot be used is left out on its own, with a
// Verdict saying why, and never breaks the config of the others.
package compiler

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Kind names one of the four custom resource kinds.
type Kind string

// The kinds the compiler gives verdicts on.
const (
	KindMailDomain        Kind = "MailDomain"
	KindSMTPCredential    Kind = "SMTPCredential"
	KindDiscoveryPolicy   Kind = "DiscoveryPolicy"
	KindTLSDeliveryPolicy Kind = "TLSDeliveryPolicy"
)

// ObjectKey identifies one custom resource.
type ObjectKey struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k ObjectKey) String() string { return string(k.Kind) + " " + k.Namespace + "/" + k.Name }

// Credential is an SMTPCredential with what its issued Secret says.
type Credential struct {
	Object *relayv1alpha1.SMTPCredential
	// Username and PasswordHash come from the credential's login record, written by the
	// operator where tenants cannot edit it; both are empty while no Secret was issued.
	Username     string
	PasswordHash string
	// SecretMismatch: the credential Secret is not the one the record was issued with
	// (replaced or edited by hand).
	SecretMismatch bool
}

// SecretKeyRef names one key of one Secret.
type SecretKeyRef struct {
	Namespace, Name, Key string
}

// Input is everything a snapshot is compiled from.
type Input struct {
	MailDomains       []*relayv1alpha1.MailDomain
	Credentials       []Credential
	DiscoveryPolicies []*relayv1alpha1.DiscoveryPolicy
	TLSPolicies       []*relayv1alpha1.TLSDeliveryPolicy
	// CABundles holds the PEM text of the Secret keys that TLS policies reference. A
	// missing entry means the Secret or its key does not exist.
	CABundles map[SecretKeyRef]string
	// RelayHostnames are the relay's own names, always on its certificate.
	RelayHostnames []string
	// CertificateSecret is the relay certificate's Secret; empty when there is none yet.
	CertificateSecret string
	// Discovery holds the SMTP Discovery state of each policy, keyed by
	// "<namespace>/<name>": its addresses become Domain.Discovered of the domains the
	// policy covers (see state.Apply).
	Discovery map[string]state.State
	// SecretProblems holds what the operator found of each secret a MailDomain gives
	// the relays, by its copy's name (RelaySecret.Copy): "" when it has the keys its use
	// needs, else what is wrong with it. A missing entry means the Secret does not exist.
	SecretProblems map[string]string
	// DKIM are the keys each MailDomain's mail is signed with, by MailDomain: those of
	// its selectors whose record the operator found in DNS, at most one per algorithm
	// (see the operator's DKIM checker). A key for a selector the spec no longer names
	// is dropped.
	DKIM map[types.NamespacedName][]snapshot.DKIMKey
	// Relays is how many relay replicas are live: each enforces its share of every
	// credential's sending limits (snapshot.Snapshot.Relays).
	Relays int
	// ReportCredential is the operator's own SMTP identity, which sends the discovery
	// reports through the relay; nil when the operator sends none.
	ReportCredential *ReportCredential
	// Claims are the domains' durable claims by namespace as last stored, by domain
	// (see Claim); Now and ClaimReleaseAfter decide when a vacant one is released.
	Claims            map[string]Claim
	Now               time.Time
	ClaimReleaseAfter time.Duration
}

// ReportCredential is the operator's SMTP identity for discovery reports. The password
// hash is computed once, when the password is generated, so compiling stays
// deterministic.
type ReportCredential struct {
	Username     string
	PasswordHash string
	Source       snapshot.ObjectRef
}

// ReportSender is the envelope sender and From: of a discovery policy's report: the
// postmaster of the first (in name order) of the domains the policy covers.
func ReportSender(domains []string) string {
	if len(domains) == 0 {
		return ""
	}
	return "postmaster@" + slices.Min(domains)
}

// Verdict is what the compiler decided about one object.
type Verdict struct {
	// Generation is the metadata.generation the verdict is about.
	Generation int64
	// Accepted says the object is in the snapshot. Reason and Message say why not, or
	// describe how it is in effect.
	Accepted bool
	Reason   string
	Message  string
	// Fingerprint changes whenever what the object contributes to the snapshot changes.
	Fingerprint string

	// For MailDomains: counts and the policies in effect for the domain.
	Users       int32
	Credentials int32
	Policies    []string
	// For policies: the domains (spec.domain) the policy is in effect for.
	MailDomains []string
	// For MailDomains that give the relays secrets (RelaySecrets: route credentials,
	// the delivery events' key): why the relays lack one, or "" when they have them
	// all. The domain is accepted either way: mail on such a hop waits in the queue,
	// and events are not sent, rather than the domain leaving the config.
	RelaySecrets  bool
	SecretProblem string
}

// Result is a compiled snapshot and a verdict for every input object.
type Result struct {
	Snapshot *snapshot.Snapshot
	Verdicts map[ObjectKey]*Verdict
	// Hostnames are the DNS names the relay certificate must cover, sorted.
	Hostnames []string
	// Claims are the domains' claims after this render, to be stored before the
	// snapshot is written.
	Claims map[string]Claim
}

// compilation is the working state of one Compile call.
type compilation struct {
	in       Input
	res      *Result
	domains  map[string]*domainEntry // by spec.domain, accepted only
	byNS     map[string][]*domainEntry
	byObject map[ObjectKey]*domainEntry
}

type domainEntry struct {
	obj   *relayv1alpha1.MailDomain
	entry snapshot.Domain
	// addresses are the users and functional accounts (alias targets and senders);
	// senders also holds the aliases.
	addresses map[string]bool
	senders   map[string]bool
	verdict   *Verdict
}

// Compile builds the snapshot. It fails only when the result would not pass
// snapshot.Validate, which is a bug in the compiler, not in the input.
func Compile(in Input) (*Result, error) {
	c := &compilation{
		in: in,
		res: &Result{
			Snapshot: &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Relays: in.Relays},
			Verdicts: make(map[ObjectKey]*Verdict, len(in.MailDomains)+len(in.Credentials)+len(in.DiscoveryPolicies)+len(in.TLSPolicies)),
		},
		domains:  make(map[string]*domainEntry, len(in.MailDomains)),
		byNS:     map[string][]*domainEntry{},
		byObject: make(map[ObjectKey]*domainEntry, len(in.MailDomains)),
	}
	c.compileDomains()
	c.compileCredentials()
	c.compileDiscoveryPolicies()
	c.compileTLSPolicies()
	c.finishDomains()
	c.compileCertificate()

	c.compileReportCredential()

	s := c.res.Snapshot
	s.Normalize()
	c.fingerprintDomains()
	// Discovered addresses are not a MailDomain's content: they change without its spec,
	// so they stay out of its fingerprint (and its Ready condition).
	state.Apply(s, c.in.Discovery)
	s.Normalize()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("compiled snapshot is invalid: %w", err)
	}
	if _, err := s.Marshal(); err != nil {
		return nil, err
	}
	return c.res, nil
}

// older orders objects by age, then namespace/name: the order that decides conflicts.
func older(a, b metav1.Object) int {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		if ta.Before(&tb) {
			return -1
		}
		return 1
	}
	return cmp.Or(strings.Compare(a.GetNamespace(), b.GetNamespace()), strings.Compare(a.GetName(), b.GetName()))
}

func (c *compilation) verdict(kind Kind, obj metav1.Object) *Verdict {
	v := &Verdict{Generation: obj.GetGeneration()}
	c.res.Verdicts[ObjectKey{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}] = v
	return v
}

func reject(v *Verdict, reason, format string, args ...any) {
	v.Accepted = false
	v.Reason = reason
	v.Message = fmt.Sprintf(format, args...)
}

func accept(v *Verdict, message string) {
	v.Accepted = true
	v.Reason = relayv1alpha1.ReasonCompiled
	v.Message = message
}

// fingerprint hashes the JSON of what an object contributes.
func fingerprint(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p) // encoding plain structs and strings cannot fail
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func ref(obj metav1.Object) snapshot.ObjectRef {
	return snapshot.ObjectRef{Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

func nsName(obj metav1.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }
