package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Condition types shared by every kind.
const (
	// ConditionAccepted says the object made it into the relay config snapshot.
	ConditionAccepted = "Accepted"
	// ConditionReady says every ready relay replica enforces the object.
	ConditionReady = "Ready"
	// ConditionCertificateReady reports, on MailDomains, the relay's STARTTLS certificate.
	ConditionCertificateReady = "CertificateReady"
	// ConditionRelaySecretsReady reports, on MailDomains whose inboundDelivery or
	// outboundRoute logs in or that send delivery events, whether the relays have the
	// credentials and keys to do so.
	ConditionRelaySecretsReady = "RelaySecretsReady"
	// ConditionDKIMPublished reports, on MailDomains that sign with DKIM, whether the
	// public record of every selector is in DNS as the operator generated it.
	ConditionDKIMPublished = "DKIMPublished"
)

// Condition reasons. They are CamelCase, stable, and safe to alert on.
const (
	// ReasonCompiled: the object is part of the current relay config snapshot.
	ReasonCompiled = "Compiled"
	// ReasonEnforced: every ready relay replica has applied a snapshot containing the object.
	ReasonEnforced = "Enforced"
	// ReasonPropagating: the snapshot is written but not yet applied by every relay replica.
	ReasonPropagating = "Propagating"
	// ReasonInvalidReference: the object names a MailDomain or Secret that does not exist.
	ReasonInvalidReference = "InvalidReference"
	// ReasonInvalidSpec: the spec passed admission but cannot be used (for example an
	// address listed both as a user and as invalid).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonDomainConflict: another namespace claimed the same domain first.
	ReasonDomainConflict = "DomainConflict"
	// ReasonPolicyConflict: another policy matches the same destination.
	ReasonPolicyConflict = "PolicyConflict"
	// ReasonSecretIssued: the credential's Secret holds a password the relay accepts.
	ReasonSecretIssued = "SecretIssued"
	// ReasonCertificateNotReady: the relay's certificate is not issued yet.
	ReasonCertificateNotReady = "CertificateNotReady"
	// ReasonCertManagerMissing: cert-manager's CRDs are not installed.
	ReasonCertManagerMissing = "CertManagerMissing"
	// ReasonDisabled: the policy is switched off.
	ReasonDisabled = "Disabled"
	// ReasonSecretPending: the credential's Secret has not been issued yet.
	ReasonSecretPending = "SecretPending"
	// ReasonCertificateIssued: the relay certificate is issued and current.
	ReasonCertificateIssued = "Issued"
	// ReasonSecretsCopied: the credentials and keys the spec names are copied for the
	// relays.
	ReasonSecretsCopied = "SecretsCopied"
	// ReasonSecretMissing: a Secret the spec names does not exist or lacks a key it
	// needs; mail on that route waits in the queue, and delivery events are not sent,
	// until it is fixed.
	ReasonSecretMissing = "SecretMissing"
	// ReasonRouteLoginFailed (an Event on a MailDomain): a relay could not log in on one
	// of the domain's hops; mail on it is deferred until it can.
	ReasonRouteLoginFailed = "RouteLoginFailed"
	// ReasonRecordsPublished: every DKIM selector's record is in DNS as generated.
	ReasonRecordsPublished = "RecordsPublished"
	// ReasonRecordMissing: a DKIM selector has no record in DNS yet.
	ReasonRecordMissing = "RecordMissing"
	// ReasonRecordDiffers: a DKIM selector's record in DNS holds another key.
	ReasonRecordDiffers = "RecordDiffers"
	// ReasonLookupFailed: DNS did not answer; the last known state stands.
	ReasonLookupFailed = "LookupFailed"
	// ReasonKeyPending: the operator has not generated a selector's key yet.
	ReasonKeyPending = "KeyPending"
	// ReasonSendingLimitReached (an Event on an SMTPCredential): a relay refused the
	// credential's mail for one of its sending limits. A credential that suddenly hits
	// its limits may have leaked.
	ReasonSendingLimitReached = "SendingLimitReached"
	// ReasonDKIMSigning (an Event on a MailDomain): the selectors the relays sign with
	// changed.
	ReasonDKIMSigning = "DKIMSigning"
)

// MailDomainReference names a MailDomain in the same namespace.
type MailDomainReference struct {
	// name is the metadata.name of a MailDomain in the same namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SecretKeySelector names one key of a Secret in the same namespace.
type SecretKeySelector struct {
	// name is the metadata.name of a Secret in the same namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key is the key in the Secret's data. Defaults to ca.crt.
	// +optional
	// +kubebuilder:default=ca.crt
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// UserRole is the role of a registered user, as in the gateways Postwarden replaces.
// +kubebuilder:validation:Enum=EndUser;SilentUser
type UserRole string

const (
	// RoleEndUser is a person who receives quarantine digests and reports.
	RoleEndUser UserRole = "EndUser"
	// RoleSilentUser is filtered like an end user but receives no digests or reports.
	RoleSilentUser UserRole = "SilentUser"
)

// Event reasons of SMTP Discovery, on DiscoveryPolicies.
const (
	// EventDiscoveryReport: the weekly report of new users and aliases (Normal).
	EventDiscoveryReport = "DiscoveryReport"
	// EventDiscoveryReportFailed: the report mail could not be sent; it is retried (Warning).
	EventDiscoveryReportFailed = "DiscoveryReportFailed"
	// EventDiscoveryStateDamaged: the state ConfigMaps were incomplete or did not decode;
	// what decoded was kept (Warning).
	EventDiscoveryStateDamaged = "DiscoveryStateDamaged"
	// EventDiscoveryCatchAll: a covered domain's server accepted a random address, so
	// discovery stops learning its addresses (Warning).
	EventDiscoveryCatchAll = "DiscoveryCatchAll"
	// EventDiscoveryLimitReached: a covered domain's discovered users and aliases reached
	// maxAddressesPerDomain (Warning).
	EventDiscoveryLimitReached = "DiscoveryLimitReached"
)

// GetConditions returns the object's status conditions. Every kind has them, so the
// operator writes any kind's status through one function.
func (d *MailDomain) GetConditions() []metav1.Condition { return d.Status.Conditions }

// GetConditions returns the object's status conditions.
func (c *SMTPCredential) GetConditions() []metav1.Condition { return c.Status.Conditions }

// GetConditions returns the object's status conditions.
func (p *DiscoveryPolicy) GetConditions() []metav1.Condition { return p.Status.Conditions }

// GetConditions returns the object's status conditions.
func (p *TLSDeliveryPolicy) GetConditions() []metav1.Condition { return p.Status.Conditions }
