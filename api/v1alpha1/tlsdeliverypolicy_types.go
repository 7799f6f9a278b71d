package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TLSDirection says which deliveries a TLSDeliveryPolicy governs.
// +kubebuilder:validation:Enum=Outbound;Inbound
type TLSDirection string

const (
	// DirectionOutbound governs delivery to recipient domains on the internet.
	DirectionOutbound TLSDirection = "Outbound"
	// DirectionInbound governs delivery to a MailDomain's own mail server.
	DirectionInbound TLSDirection = "Inbound"
)

// TLSMode is how strictly a delivery must be encrypted.
// +kubebuilder:validation:Enum=Opportunistic;RequireTLS;RequireVerifiedTLS
type TLSMode string

const (
	// TLSOpportunistic uses STARTTLS when offered, without checking the certificate,
	// and falls back to plaintext when TLS is not offered or fails.
	TLSOpportunistic TLSMode = "Opportunistic"
	// TLSRequire never sends in plaintext, but does not check the certificate.
	TLSRequire TLSMode = "RequireTLS"
	// TLSRequireVerified needs a certificate chain that verifies and a name that matches
	// the MX host or the recipient domain (wildcards allowed).
	TLSRequireVerified TLSMode = "RequireVerifiedTLS"
)

// TLSVersion is a minimum TLS protocol version.
// +kubebuilder:validation:Enum="1.0";"1.1";"1.2";"1.3"
type TLSVersion string

// TLSDeliveryPolicySpec sets the TLS a delivery needs, per destination.
//
// +kubebuilder:validation:XValidation:rule="self.direction == 'Inbound' || (has(self.destinations) && size(self.destinations) > 0)",message="an Outbound policy needs at least one destination; use \"*\" for every destination"
// +kubebuilder:validation:XValidation:rule="self.direction == 'Outbound' || !has(self.destinations) || size(self.destinations) == 0",message="an Inbound policy applies to the MailDomains' own servers; leave destinations empty"
// +kubebuilder:validation:XValidation:rule="self.direction == 'Outbound' || (has(self.mailDomainRefs) && size(self.mailDomainRefs) > 0)",message="an Inbound policy needs mailDomainRefs: the domains whose own servers it applies to"
// +kubebuilder:validation:XValidation:rule="!has(self.caBundleSecretRef) || self.mode == 'RequireVerifiedTLS'",message="caBundleSecretRef is only used with mode RequireVerifiedTLS"
type TLSDeliveryPolicySpec struct {
	// direction is Outbound (the default: delivery to recipient domains on the internet)
	// or Inbound (delivery to the MailDomains' own mail servers).
	// +optional
	// +kubebuilder:default=Outbound
	Direction TLSDirection `json:"direction,omitempty"`

	// mailDomainRefs names the MailDomains, in this namespace, whose mail the policy
	// governs. For Outbound, empty means every MailDomain in the namespace.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=500
	MailDomainRefs []MailDomainReference `json:"mailDomainRefs,omitempty"`

	// destinations are the recipient domains an Outbound policy matches: an exact domain
	// (example.org), a wildcard for its subdomains (*.example.org), or "*" for every
	// domain. The most specific match wins: exact, then the longest wildcard, then "*".
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:XValidation:rule="self == '*' || self.matches('^([*][.])?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",message="destinations must be a lower-case domain such as example.org, a wildcard such as *.example.org, or * for every domain"
	// +kubebuilder:validation:items:XValidation:rule="(self.startsWith('*.') ? size(self) - 2 : size(self)) <= 253",message="destinations must be at most 253 characters, not counting a leading *."
	Destinations []string `json:"destinations,omitempty"`

	// mode is Opportunistic (the default: TLS when offered, plaintext otherwise),
	// RequireTLS (always encrypted, certificate not checked) or RequireVerifiedTLS
	// (encrypted, with a valid chain and a matching name). Mail that cannot meet the
	// mode is deferred and finally bounced, never sent in plaintext.
	// +optional
	// +kubebuilder:default=Opportunistic
	Mode TLSMode `json:"mode,omitempty"`

	// minTLSVersion is the oldest TLS version accepted: "1.0", "1.1", "1.2" (the
	// default) or "1.3".
	// +optional
	// +kubebuilder:default="1.2"
	MinTLSVersion TLSVersion `json:"minTLSVersion,omitempty"`

	// caBundleSecretRef names a Secret key holding PEM CA certificates to verify against
	// instead of the system roots, for RequireVerifiedTLS to a private server.
	// +optional
	CABundleSecretRef *SecretKeySelector `json:"caBundleSecretRef,omitempty"`
}

// TLSDeliveryPolicyStatus is what the operator last observed about the policy.
type TLSDeliveryPolicyStatus struct {
	// conditions: Accepted (in the relay config) and Ready (enforced by every relay).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// mailDomains lists the domains (spec.domain) the policy is in effect for.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	MailDomains []string `json:"mailDomains,omitempty"`
}

// TLSDeliveryPolicy sets how strictly the relay encrypts delivery to some destinations.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tlspol,categories=postwarden
// +kubebuilder:printcolumn:name="Direction",type=string,JSONPath=`.spec.direction`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Destinations",type=string,JSONPath=`.spec.destinations`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TLSDeliveryPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired policy.
	// +required
	Spec TLSDeliveryPolicySpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status TLSDeliveryPolicyStatus `json:"status,omitempty"`
}

// TLSDeliveryPolicyList is a list of TLSDeliveryPolicies.
//
// +kubebuilder:object:root=true
type TLSDeliveryPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TLSDeliveryPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TLSDeliveryPolicy{}, &TLSDeliveryPolicyList{})
}
