package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MailDomainSpec describes one mail domain that the relay serves: who may send as it,
// which of its addresses exist, and where its inbound mail goes.
//
// +kubebuilder:validation:XValidation:rule="!has(self.users) || self.users.all(u, u.address.endsWith('@' + self.domain))",message="every users[].address must be an address in spec.domain"
// +kubebuilder:validation:XValidation:rule="!has(self.functionalAccounts) || self.functionalAccounts.all(f, f.address.endsWith('@' + self.domain))",message="every functionalAccounts[].address must be an address in spec.domain"
// +kubebuilder:validation:XValidation:rule="!has(self.aliases) || self.aliases.all(a, a.address.endsWith('@' + self.domain))",message="every aliases[].address must be an address in spec.domain (its target may be in another domain)"
// +kubebuilder:validation:XValidation:rule="!has(self.invalidAddresses) || self.invalidAddresses.all(a, a.endsWith('@' + self.domain))",message="every invalidAddresses entry must be an address in spec.domain"
type MailDomainSpec struct {
	// domain is the DNS name the relay serves, in lower case, such as example.com.
	// The first MailDomain to claim a domain owns it; a later claim from another
	// namespace is reported with reason DomainConflict and not served.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",message="domain must be a lower-case DNS name with at least one dot, such as example.com"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="domain is immutable; create a new MailDomain for another domain"
	Domain string `json:"domain"`

	// users are the registered mailboxes of the domain. A registered user receives
	// inbound mail and may send as its address (and as its aliases) on submission.
	// +optional
	// +listType=map
	// +listMapKey=address
	// +kubebuilder:validation:MaxItems=4000
	Users []MailUser `json:"users,omitempty"`

	// functionalAccounts are shared or role addresses (info@, billing@, noreply@) that
	// are not people. They receive mail and may be used as senders.
	// +optional
	// +listType=map
	// +listMapKey=address
	// +kubebuilder:validation:MaxItems=1000
	FunctionalAccounts []FunctionalAccount `json:"functionalAccounts,omitempty"`

	// aliases are extra addresses that deliver to, and may send for, a primary address.
	// +optional
	// +listType=map
	// +listMapKey=address
	// +kubebuilder:validation:MaxItems=4000
	Aliases []MailAlias `json:"aliases,omitempty"`

	// invalidAddresses are addresses of the domain that the relay rejects on port 25
	// with 550 5.1.1, whatever SMTP Discovery learns about them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4000
	// +kubebuilder:validation:items:MaxLength=254
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="invalidAddresses must be lower-case email addresses such as old.user@example.com"
	InvalidAddresses []string `json:"invalidAddresses,omitempty"`

	// sendingServers are the networks of the domain's own mail servers and devices,
	// allowed to relay mail from the domain's senders on port 25 without SMTP AUTH.
	// Only safe when the relay sees real client addresses (externalTrafficPolicy: Local
	// or the PROXY protocol).
	// +optional
	// +listType=map
	// +listMapKey=cidr
	// +kubebuilder:validation:MaxItems=256
	SendingServers []SendingServer `json:"sendingServers,omitempty"`

	// requireSMTPAuth turns the sending-server allowlist off: every sender must then
	// authenticate on the submission port. Defaults to false.
	// +optional
	RequireSMTPAuth bool `json:"requireSMTPAuth,omitempty"`

	// inboundDelivery is the domain's own mail server, where the relay delivers the mail
	// it accepts for the domain on port 25. Without it the domain is outbound-only and
	// port 25 refuses its recipients.
	// +optional
	InboundDelivery *InboundDelivery `json:"inboundDelivery,omitempty"`

	// outboundRoute sends the domain's outbound mail (mail from its senders to other
	// domains, and the relay's bounces on its behalf) to this server instead of the
	// recipients' MX hosts: the smarthost a provider gives the customer. It takes
	// precedence over the relay's own --smarthost. TLS policies apply to it as to any
	// other hop.
	// +optional
	OutboundRoute *SMTPRoute `json:"outboundRoute,omitempty"`

	// deliveryEvents sends a signed JSON event for each recipient of the domain's mail
	// that is delivered, deferred, bounced, expires or is refused, to an HTTPS endpoint of the
	// customer's (the model of SES and SendGrid event webhooks).
	// +optional
	DeliveryEvents *DeliveryEvents `json:"deliveryEvents,omitempty"`

	// sendingLimits are the defaults of the domain's SMTPCredentials' limits: a field a
	// credential leaves at 0 takes the value here, and a field left at 0 here the
	// built-in default (see SendingLimits).
	// +optional
	SendingLimits *SendingLimits `json:"sendingLimits,omitempty"`

	// dkim signs the domain's outbound mail (from credentials and sending servers, never
	// the inbound mail the relay delivers to the domain) with DKIM. The operator
	// generates each selector's key pair, keeps the private key where only the relays
	// read it, and shows in status.dkim the DNS record to publish; the relays sign with
	// a selector only once its record is found in DNS.
	// +optional
	DKIM *DKIMSigning `json:"dkim,omitempty"`

	// submissionHostnames are extra names, such as smtp.example.com, that clients of this
	// domain use to reach the relay. They are added to the relay's STARTTLS certificate.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",message="submissionHostnames must be lower-case DNS names such as smtp.example.com"
	SubmissionHostnames []string `json:"submissionHostnames,omitempty"`
}

// MailUser is a registered mailbox.
type MailUser struct {
	// address is the user's email address, in lower case, such as jane.doe@example.com.
	// +required
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="address must be a lower-case email address such as jane.doe@example.com (no quotes, '%', '!' or source routes)"
	Address string `json:"address"`

	// displayName is the user's name, used in reports.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName,omitempty"`

	// role is EndUser (the default) or SilentUser, who receives no digests or reports.
	// +optional
	// +kubebuilder:default=EndUser
	Role UserRole `json:"role,omitempty"`
}

// FunctionalAccount is a shared or role address that is not a person.
type FunctionalAccount struct {
	// address is the account's email address, in lower case, such as billing@example.com.
	// +required
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="address must be a lower-case email address such as billing@example.com (no quotes, '%', '!' or source routes)"
	Address string `json:"address"`

	// description says what the account is for.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`
}

// MailAlias maps an extra address to a primary one.
// +kubebuilder:validation:XValidation:rule="self.address != self.target",message="an alias cannot point to itself: address and target must differ"
type MailAlias struct {
	// address is the alias, in this domain, such as j.doe@example.com.
	// +required
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="address must be a lower-case email address such as j.doe@example.com (no quotes, '%', '!' or source routes)"
	Address string `json:"address"`

	// target is the primary address the alias stands for: a user or functional account
	// of this domain or of another MailDomain in the namespace.
	// +required
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="target must be a lower-case email address such as jane.doe@example.com"
	Target string `json:"target"`
}

// SendingServer is a network allowed to relay without SMTP AUTH.
type SendingServer struct {
	// cidr is the network, such as 203.0.113.0/28 or 2001:db8:10::/64. A single host is
	// written as /32 (IPv4) or /128 (IPv6). Ranges wider than /8 (IPv4) or /32 (IPv6)
	// are refused: they would make the relay an open relay.
	// +required
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be a network in CIDR notation, such as 203.0.113.0/28 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).prefixLength() >= (cidr(self).ip().family() == 4 ? 8 : 32)",message="cidr is too wide: more than a /8 (IPv4) or /32 (IPv6) would make the relay an open relay"
	CIDR string `json:"cidr"`

	// description says which server or device this is.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Description string `json:"description,omitempty"`
}

// InboundDelivery is the domain's own mail server.
type InboundDelivery struct {
	// host is the server's DNS name or IP address, such as mail.corp.example.com.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')",message="host must be a lower-case DNS name or an IP address"
	Host string `json:"host"`

	// port is the server's SMTP port. Defaults to 25.
	// +optional
	// +kubebuilder:default=25
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// auth, when set, logs in to the server with SMTP AUTH before delivering.
	// +optional
	Auth *SMTPAuth `json:"auth,omitempty"`
}

// SMTPRoute is a server that takes a domain's outbound mail.
type SMTPRoute struct {
	// host is the server's DNS name or IP address, such as smtp.provider.example.
	// +required
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$')",message="host must be a lower-case DNS name or an IP address"
	Host string `json:"host"`

	// port is the server's SMTP port. Defaults to 587, the submission port, where a
	// smarthost that asks for a password usually listens.
	// +optional
	// +kubebuilder:default=587
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// auth, when set, logs in to the server with SMTP AUTH before delivering.
	// +optional
	Auth *SMTPAuth `json:"auth,omitempty"`
}

// DeliveryEvents is the endpoint that receives a domain's delivery events.
type DeliveryEvents struct {
	// url is where the events are POSTed, such as https://hooks.example.com/mail.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https'",message="url must be an https:// URL"
	URL string `json:"url"`

	// secretRef names a Secret in the MailDomain's namespace whose key secret is the
	// HMAC-SHA256 key each event is signed with (X-Postwarden-Signature), at least 16
	// bytes. The operator copies it for the relays; it never enters the relay config.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`

	// events are the event types to send; empty: all of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	Events []DeliveryEventType `json:"events,omitempty"`
}

// DKIMSigning is how the relays sign a domain's outbound mail.
type DKIMSigning struct {
	// selectors are the domain's DKIM keys in order of preference. For each key type,
	// the relays sign with the first selector whose record the operator has found in
	// DNS; with an RSA2048 and an Ed25519 selector both published, every message gets
	// both signatures (RFC 8463). To rotate a key without a gap, put a new selector
	// first and publish its record: signing switches to it once the operator sees it,
	// and the old one, now Standby, can be removed when status.dkim says so.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	Selectors []DKIMSelector `json:"selectors"`
}

// DKIMSelector is one DKIM key of a domain.
type DKIMSelector struct {
	// name is the selector (the s= tag), such as pw2026a: the record is published at
	// <name>._domainkey.<domain>. Use a new name for each new key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be a DKIM selector: lower-case letters, digits and '-', in labels separated by '.', such as pw2026a"
	Name string `json:"name"`

	// keyType is RSA2048 (the default, which every receiver verifies) or Ed25519
	// (RFC 8463: short records and fast signing, but not verified everywhere yet, so
	// use it beside an RSA2048 selector).
	// +optional
	// +kubebuilder:default=RSA2048
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="the keyType of a selector cannot change: add a selector with a new name for a key of another type"
	KeyType DKIMKeyType `json:"keyType,omitempty"`
}

// DKIMKeyType is the kind of a DKIM key.
// +kubebuilder:validation:Enum=RSA2048;Ed25519
type DKIMKeyType string

// DKIM key types.
const (
	DKIMKeyRSA2048 DKIMKeyType = "RSA2048"
	DKIMKeyEd25519 DKIMKeyType = "Ed25519"
)

// DeliveryEventType is what became of one recipient in one attempt.
// +kubebuilder:validation:Enum=delivered;deferred;bounced;expired;refused
type DeliveryEventType string

// SMTPAuth is how the relay logs in to a server of the domain's. The relay sends the
// password only over TLS (AUTH PLAIN or LOGIN, whichever the server offers after
// STARTTLS): a server that offers no STARTTLS gets no password, and the mail waits.
type SMTPAuth struct {
	// secretRef names a Secret in the MailDomain's namespace with the keys username and
	// password (type kubernetes.io/basic-auth, or Opaque with those keys). The operator
	// copies the two values into a Secret that only the relays read; they never enter
	// the relay config, status, Events or logs.
	// +required
	SecretRef LocalSecretReference `json:"secretRef"`
}

// LocalSecretReference names a Secret in the same namespace.
type LocalSecretReference struct {
	// name is the metadata.name of a Secret in the same namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="name must be a Secret name: lower-case letters, digits, '-' and '.'"
	Name string `json:"name"`
}

// MailDomainStatus is what the operator last observed about the domain.
type MailDomainStatus struct {
	// conditions: Accepted (in the relay config) and Ready (enforced by every relay).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// users counts registered users, functional accounts and aliases in effect.
	// +optional
	Users int32 `json:"users,omitempty"`

	// credentials counts SMTPCredentials that authenticate for the domain.
	// +optional
	Credentials int32 `json:"credentials,omitempty"`

	// policies names the DiscoveryPolicies and TLSDeliveryPolicies in effect.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	Policies []string `json:"policies,omitempty"`

	// certificate is the state of the relay's STARTTLS certificate for the domain's
	// submission hostnames.
	// +optional
	Certificate *CertificateStatus `json:"certificate,omitempty"`

	// dkim is the state of the domain's DKIM selectors and the DNS records that mail
	// through the relay needs to pass DMARC.
	// +optional
	DKIM *DKIMStatus `json:"dkim,omitempty"`

	// configHash is the hash of the first relay config snapshot that held the domain as it
	// is now; a relay reporting it (or a later one) enforces the domain.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ConfigHash string `json:"configHash,omitempty"`
}

// DKIMStatus is what the operator found of a domain's DKIM keys and records in DNS.
type DKIMStatus struct {
	// selectors are the spec's selectors, in its order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=4
	Selectors []DKIMSelectorStatus `json:"selectors,omitempty"`

	// spf is the SPF record that lets the relay send for the domain.
	// +optional
	SPF *DNSRecordStatus `json:"spf,omitempty"`

	// dmarc is the domain's DMARC policy record.
	// +optional
	DMARC *DNSRecordStatus `json:"dmarc,omitempty"`

	// lastChanged is when a lookup last found something different: the operator looks again every --dns-check-interval (more often while a record is missing) but writes status only on a change.
	// +optional
	LastChanged *metav1.Time `json:"lastChanged,omitempty"`
}

// DKIMSelectorState is where a selector stands.
type DKIMSelectorState string

// DKIM selector states.
const (
	// DKIMStateKeyPending: the key pair is not generated yet.
	DKIMStateKeyPending DKIMSelectorState = "KeyPending"
	// DKIMStateNotPublished: the record is not in DNS (yet); the relays do not sign with it.
	DKIMStateNotPublished DKIMSelectorState = "NotPublished"
	// DKIMStateRecordDiffers: DNS holds another key under the selector; the relays do not
	// sign with it.
	DKIMStateRecordDiffers DKIMSelectorState = "RecordDiffers"
	// DKIMStateSigning: the record is published and the relays sign with this selector.
	DKIMStateSigning DKIMSelectorState = "Signing"
	// DKIMStateStandby: the record is published, but a selector earlier in the spec signs.
	DKIMStateStandby DKIMSelectorState = "Standby"
)

// DKIMSelectorStatus is one selector's key and record.
type DKIMSelectorStatus struct {
	// name is the selector.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// keyType is the key's type.
	// +optional
	KeyType DKIMKeyType `json:"keyType,omitempty"`

	// state is KeyPending, NotPublished, RecordDiffers, Signing or Standby.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	State DKIMSelectorState `json:"state,omitempty"`

	// recordName is the DNS name to publish the TXT record at.
	// +optional
	// +kubebuilder:validation:MaxLength=320
	RecordName string `json:"recordName,omitempty"`

	// record is the TXT record's value, exactly as to publish it. DNS software splits
	// a value over 255 bytes into several strings; receivers join them.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Record string `json:"record,omitempty"`

	// signedUntil is when the relays last stopped signing with the selector. Receivers
	// verify queued and late mail against the record for days after: keep it published
	// until removableAfter.
	// +optional
	SignedUntil *metav1.Time `json:"signedUntil,omitempty"`

	// removableAfter is when the selector's record can leave DNS and the selector the
	// spec: a week after it last signed.
	// +optional
	RemovableAfter *metav1.Time `json:"removableAfter,omitempty"`
}

// DNSRecordStatus is a TXT record the domain needs, and what DNS holds.
type DNSRecordStatus struct {
	// recordName is the DNS name of the TXT record.
	// +optional
	// +kubebuilder:validation:MaxLength=320
	RecordName string `json:"recordName,omitempty"`

	// expected is the record to publish, or, for SPF, the mechanism the domain's record
	// must contain.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Expected string `json:"expected,omitempty"`

	// found is the record DNS holds, if any (cut at 1024 bytes).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Found string `json:"found,omitempty"`

	// ok says whether what DNS holds is what mail through the relay needs.
	// +optional
	OK bool `json:"ok,omitempty"`
}

// CertificateStatus summarises a cert-manager Certificate.
type CertificateStatus struct {
	// secretName is the Secret that holds the certificate and key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// ready mirrors the Certificate's Ready condition.
	// +optional
	Ready bool `json:"ready,omitempty"`

	// notAfter is when the current certificate expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
}

// MailDomain is a mail domain served by the relay: its users and addresses, the
// servers allowed to send for it, and where its inbound mail is delivered.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=md;mdomain,categories=postwarden
// +kubebuilder:printcolumn:name="Domain",type=string,JSONPath=`.spec.domain`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Users",type=integer,JSONPath=`.status.users`
// +kubebuilder:printcolumn:name="Credentials",type=integer,JSONPath=`.status.credentials`
// +kubebuilder:printcolumn:name="DKIM",type=string,JSONPath=`.status.conditions[?(@.type=="DKIMPublished")].reason`,priority=1
// +kubebuilder:printcolumn:name="Inbound",type=string,JSONPath=`.spec.inboundDelivery.host`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MailDomain struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired domain.
	// +required
	Spec MailDomainSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status MailDomainStatus `json:"status,omitempty"`
}

// MailDomainList is a list of MailDomains.
//
// +kubebuilder:object:root=true
type MailDomainList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MailDomain `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MailDomain{}, &MailDomainList{})
}
