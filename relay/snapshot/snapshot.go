// Package snapshot is the contract between the Postwarden operator and its relays: one
// versioned document that holds everything a relay enforces. The operator compiles the
// custom resources into a Snapshot and writes it, sharded, to Secrets; each relay reads
// it back, validates all of it, and swaps it in whole. Both sides use this package, so
// the format has exactly one definition. docs/relay-config.md describes it for humans.
package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// APIVersion identifies this version of the format. A relay refuses any other.
const APIVersion = "relay.postwarden.dev/snapshot/v1"

// Snapshot is the whole relay configuration at one moment. Lists are kept sorted (see
// Normalize), so the same input always encodes to the same bytes and hash.
type Snapshot struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Hash is the hex SHA-256 of the canonical encoding with Hash itself empty. Encode
	// fills it in; Decode checks it.
	Hash string `json:"hash,omitempty"`

	Domains           []Domain          `json:"domains,omitempty"`
	Credentials       []Credential      `json:"credentials,omitempty"`
	DiscoveryPolicies []DiscoveryPolicy `json:"discoveryPolicies,omitempty"`
	TLSPolicies       []TLSPolicy       `json:"tlsPolicies,omitempty"`
	Certificates      []Certificate     `json:"certificates,omitempty"`
	// Relays is how many relay replicas were live when the operator wrote the snapshot:
	// each enforces 1/Relays of every credential's Limits, so that together they enforce
	// the limits (see relay/internal/sendlimit). 0 counts as 1.
	Relays int `json:"relays,omitempty"`
}

// ObjectRef names the custom resource an entry was compiled from, for logs and for the
// observations a relay reports back.
type ObjectRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
}

func (r ObjectRef) String() string { return r.Namespace + "/" + r.Name }

// Domain is a managed mail domain (a MailDomain).
type Domain struct {
	// Name is the lower-case domain, such as example.com.
	Name   string    `json:"name"`
	Source ObjectRef `json:"source"`

	Users              []User   `json:"users,omitempty"`
	FunctionalAccounts []string `json:"functionalAccounts,omitempty"`
	Aliases            []Alias  `json:"aliases,omitempty"`
	InvalidAddresses   []string `json:"invalidAddresses,omitempty"`
	// SendingServers are CIDRs allowed to relay the domain's senders without AUTH.
	SendingServers []string `json:"sendingServers,omitempty"`
	// RequireSMTPAuth disables SendingServers.
	RequireSMTPAuth bool `json:"requireSMTPAuth,omitempty"`
	// InboundDelivery is the domain's own mail server; nil means outbound-only.
	InboundDelivery *Endpoint `json:"inboundDelivery,omitempty"`
	// OutboundRoute, when set, takes the domain's outbound mail instead of the
	// recipients' MX hosts (and instead of the relay's --smarthost).
	OutboundRoute *Endpoint `json:"outboundRoute,omitempty"`
	// DiscoveryPolicy names the DiscoveryPolicies entry covering the domain, if any.
	DiscoveryPolicy string `json:"discoveryPolicy,omitempty"`
	// Discovered are the addresses SMTP Discovery has learned, as the operator last merged
	// the relays' observations. The lists above always win over them.
	Discovered []DiscoveredAddress `json:"discovered,omitempty"`
	// DeliveryEvents, when set, is the HTTPS endpoint that receives signed events of the
	// domain's mail (delivered, deferred, bounced, expired, refused).
	DeliveryEvents *Webhook `json:"deliveryEvents,omitempty"`
	// DKIM are the keys the relay signs the domain's outbound mail with (submission and
	// sending servers, never inbound), one signature per key: at most one key per
	// algorithm, and only keys whose public record the operator has found published.
	DKIM []DKIMKey `json:"dkim,omitempty"`
}

// DKIM signing algorithms (RFC 6376, RFC 8463).
const (
	DKIMRSASHA256     = "rsa-sha256"
	DKIMEd25519SHA256 = "ed25519-sha256"
)

// DKIMKey is one DKIM signing key of a domain. The private key itself is never in a
// snapshot: it is the key DKIMPrivateKeyKey of the relay secret SecretName, a PKCS #8
// PEM block.
type DKIMKey struct {
	// Selector is the s= tag: the record is at <selector>._domainkey.<domain>.
	Selector string `json:"selector"`
	// Algorithm is DKIMRSASHA256 or DKIMEd25519SHA256.
	Algorithm  string `json:"algorithm"`
	SecretName string `json:"secretName"`
}

// Delivery event types: what became of one recipient in one attempt. The names are
// those of the relay's tracking lines.
const (
	EventDelivered = "delivered"
	EventDeferred  = "deferred"
	EventBounced   = "bounced"
	EventExpired   = "expired"
	// EventRefused: the relay itself refused the recipient (at RCPT, such as an
	// unknown user of the domain, or its message at DATA); nothing was queued.
	EventRefused = "refused"
)

// EventTypes are the delivery event types, in a fixed order.
var EventTypes = []string{EventDelivered, EventDeferred, EventBounced, EventExpired, EventRefused}

// Webhook is an HTTPS endpoint that receives a domain's delivery events.
type Webhook struct {
	// URL is an https:// URL.
	URL string `json:"url"`
	// SecretName names the Secret in the relay's namespace (a folder of the relay's
	// --relay-secrets-dir when it runs from a file) whose key "secret" is the HMAC key
	// the events are signed with. The key itself is never in a snapshot.
	SecretName string `json:"secretName"`
	// Events are the event types sent; empty means all of EventTypes.
	Events []string `json:"events,omitempty"`
}

// Wants reports whether events of type t are sent to w.
func (w *Webhook) Wants(t string) bool {
	return w != nil && (len(w.Events) == 0 || slices.Contains(w.Events, t))
}

// Discovered address states.
const (
	// DiscoveredPending passed a verification callout but has not reached the threshold.
	DiscoveredPending = "Pending"
	// DiscoveredUser reached the threshold (or was auto-added) and counts as a user.
	DiscoveredUser = "User"
	// DiscoveredAlias was recorded as an alias of Target.
	DiscoveredAlias = "Alias"
	// DiscoveredInvalid expired, or was refused by the domain's server; it is rejected.
	DiscoveredInvalid = "Invalid"
)

// DiscoveredAddress is one address learned by SMTP Discovery.
type DiscoveredAddress struct {
	Address string `json:"address"`
	// State is DiscoveredPending, DiscoveredUser, DiscoveredAlias or DiscoveredInvalid.
	State string `json:"state"`
	// Target is the primary address of an alias.
	Target string `json:"target,omitempty"`
	// Role is the role of a discovered user.
	Role string `json:"role,omitempty"`
}

// User is a registered mailbox.
type User struct {
	Address     string `json:"address"`
	DisplayName string `json:"displayName,omitempty"`
	// Role is EndUser or SilentUser.
	Role string `json:"role,omitempty"`
}

// Alias maps Address to the primary address Target.
type Alias struct {
	Address string `json:"address"`
	Target  string `json:"target"`
}

// Endpoint is a host and TCP port.
type Endpoint struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	// AuthSecret, when set, names the Secret in the relay's namespace (a directory
	// entry for a relay run from a file) that holds the username and password to log
	// in with. The password itself is never in a snapshot.
	AuthSecret string `json:"authSecret,omitempty"`
}

// Credential is one SMTP AUTH identity. It never holds a password: only PasswordHash.
type Credential struct {
	Username string `json:"username"`
	// PasswordHash is in the format of HashPassword.
	PasswordHash string `json:"passwordHash"`
	// Domain is the Domains[].Name the credential sends for.
	Domain string `json:"domain"`
	// AllowedSenders restricts MAIL FROM and From:. Empty means every user, functional
	// account and alias of Domain.
	AllowedSenders []string  `json:"allowedSenders,omitempty"`
	Label          string    `json:"label,omitempty"`
	Source         ObjectRef `json:"source"`
	// Limits are what the credential may send through all the relays together, with
	// every default applied; nil (as in snapshots of releases before limits) means none.
	Limits *Limits `json:"limits,omitempty"`
}

// Limits are a credential's sending limits. A count of 0 means unlimited.
type Limits struct {
	// MessagesPerWindow messages in any WindowSeconds seconds.
	MessagesPerWindow int `json:"messagesPerWindow,omitempty"`
	WindowSeconds     int `json:"windowSeconds,omitempty"`
	// MessagesPerDay and RecipientsPerDay count over any 24 hours.
	MessagesPerDay       int `json:"messagesPerDay,omitempty"`
	RecipientsPerMessage int `json:"recipientsPerMessage,omitempty"`
	RecipientsPerDay     int `json:"recipientsPerDay,omitempty"`
}

// DiscoveryPolicy is SMTP Discovery for the domains that name it.
type DiscoveryPolicy struct {
	// Name is "<namespace>/<name>" of the DiscoveryPolicy.
	Name                        string `json:"name"`
	Threshold                   int    `json:"threshold"`
	WindowDays                  int    `json:"windowDays"`
	ExpiryDays                  int    `json:"expiryDays"`
	ExpiredAddressesBecomeUsers bool   `json:"expiredAddressesBecomeUsers,omitempty"`
	AutoAddAliases              bool   `json:"autoAddAliases,omitempty"`
	AutoAddOutboundUsers        bool   `json:"autoAddOutboundUsers,omitempty"`
	DefaultRole                 string `json:"defaultRole,omitempty"`
	// MaxAddressesPerDomain bounds what discovery tracks per domain (0: the default);
	// only the operator reads it.
	MaxAddressesPerDomain int      `json:"maxAddressesPerDomain,omitempty"`
	ReportRecipients      []string `json:"reportRecipients,omitempty"`
	// ReportDay is a weekday name and ReportTime is HH:MM in UTC.
	ReportDay  string `json:"reportDay,omitempty"`
	ReportTime string `json:"reportTime,omitempty"`
}

// TLS directions and modes, as in the TLSDeliveryPolicy API.
const (
	DirectionOutbound = "Outbound"
	DirectionInbound  = "Inbound"

	ModeOpportunistic      = "Opportunistic"
	ModeRequireTLS         = "RequireTLS"
	ModeRequireVerifiedTLS = "RequireVerifiedTLS"
)

// TLSPolicy is one TLSDeliveryPolicy.
type TLSPolicy struct {
	Source    ObjectRef `json:"source"`
	Direction string    `json:"direction"`
	// Domains are the managed domains whose mail the policy governs, always explicit.
	Domains []string `json:"domains"`
	// Destinations are recipient domains (exact, "*.suffix" or "*"); Outbound only.
	Destinations []string `json:"destinations,omitempty"`
	Mode         string   `json:"mode"`
	// MinVersion is "1.0", "1.1", "1.2" or "1.3".
	MinVersion string `json:"minVersion"`
	// CABundlePEM replaces the system roots for RequireVerifiedTLS when set.
	CABundlePEM string `json:"caBundlePEM,omitempty"`
}

// Certificate is a STARTTLS certificate of the relay: either a kubernetes.io/tls Secret in
// the relay's namespace, or a pair of PEM files (standalone use).
type Certificate struct {
	SecretName string `json:"secretName,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	// Hostnames are informative: the relay chooses by the names in the certificate.
	Hostnames []string `json:"hostnames,omitempty"`
}

// Normalize sorts every list, so that equal content encodes to equal bytes.
func (s *Snapshot) Normalize() {
	slices.SortFunc(s.Domains, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	for i := range s.Domains {
		d := &s.Domains[i]
		slices.SortFunc(d.Users, func(a, b User) int { return strings.Compare(a.Address, b.Address) })
		slices.SortFunc(d.Aliases, func(a, b Alias) int { return strings.Compare(a.Address, b.Address) })
		slices.Sort(d.FunctionalAccounts)
		slices.Sort(d.InvalidAddresses)
		slices.Sort(d.SendingServers)
		slices.SortFunc(d.Discovered, func(a, b DiscoveredAddress) int { return strings.Compare(a.Address, b.Address) })
		if d.DeliveryEvents != nil {
			slices.Sort(d.DeliveryEvents.Events)
		}
		slices.SortFunc(d.DKIM, func(a, b DKIMKey) int { return strings.Compare(a.Algorithm, b.Algorithm) })
	}
	slices.SortFunc(s.Credentials, func(a, b Credential) int { return strings.Compare(a.Username, b.Username) })
	for i := range s.Credentials {
		slices.Sort(s.Credentials[i].AllowedSenders)
	}
	slices.SortFunc(s.DiscoveryPolicies, func(a, b DiscoveryPolicy) int { return strings.Compare(a.Name, b.Name) })
	for i := range s.DiscoveryPolicies {
		slices.Sort(s.DiscoveryPolicies[i].ReportRecipients)
	}
	slices.SortFunc(s.TLSPolicies, func(a, b TLSPolicy) int {
		return strings.Compare(a.Source.String(), b.Source.String())
	})
	for i := range s.TLSPolicies {
		slices.Sort(s.TLSPolicies[i].Domains)
		slices.Sort(s.TLSPolicies[i].Destinations)
	}
	slices.SortFunc(s.Certificates, func(a, b Certificate) int {
		return strings.Compare(a.SecretName+"\x00"+a.CertFile, b.SecretName+"\x00"+b.CertFile)
	})
}

// Marshal normalizes s, computes its hash, stores it in s.Hash and returns the canonical
// JSON encoding.
func (s *Snapshot) Marshal() ([]byte, error) {
	s.Normalize()
	s.Hash = ""
	body, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot: %w", err)
	}
	sum := sha256.Sum256(body)
	s.Hash = hex.EncodeToString(sum[:])
	return json.Marshal(s)
}

// Unmarshal parses a canonical encoding, checks its hash and validates the content.
func Unmarshal(data []byte) (*Snapshot, error) {
	var s Snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parsing snapshot: %w", err)
	}
	if s.APIVersion != APIVersion {
		return nil, fmt.Errorf("snapshot apiVersion %q is not supported (want %q)", s.APIVersion, APIVersion)
	}
	want := s.Hash
	if want != "" {
		copied := s
		if _, err := copied.Marshal(); err != nil {
			return nil, err
		}
		if copied.Hash != want {
			return nil, fmt.Errorf("snapshot hash mismatch: content hashes to %s, document says %s", copied.Hash, want)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if want == "" {
		// Hand-written files may leave the hash out; compute it so it can be reported.
		if _, err := s.Marshal(); err != nil {
			return nil, err
		}
	}
	return &s, nil
}
