package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SMTPCredentialSpec asks for an SMTP AUTH username and password for one MailDomain.
// The operator generates both and writes them once to a Secret; the password is never
// shown again, and relays keep only its hash.
type SMTPCredentialSpec struct {
	// mailDomainRef names the MailDomain, in this namespace, that the credential sends for.
	// +required
	MailDomainRef MailDomainReference `json:"mailDomainRef"`

	// label says who uses the credential, such as "billing app" or "scanner 3rd floor".
	// It is shown in logs and message tracking, and seeds the generated username.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9][A-Za-z0-9 ._-]*$')",message="label may hold letters, digits, spaces, '.', '_' and '-', and must start with a letter or digit"
	Label string `json:"label"`

	// allowedSenders are the MAIL FROM and From: addresses the credential may use. When
	// empty, it may use every registered user, functional account and alias of its domain.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=254
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="allowedSenders must be lower-case email addresses such as noreply@example.com"
	AllowedSenders []string `json:"allowedSenders,omitempty"`

	// secretName is the Secret the operator creates, once, with the keys username,
	// password, host and port. Defaults to "<metadata.name>-smtp". The operator never
	// updates an existing Secret; delete it to get a new password.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secretName must be a valid Secret name: lower-case letters, digits, '-' and '.'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="secretName is immutable; delete and recreate the SMTPCredential to move its Secret"
	SecretName string `json:"secretName,omitempty"`

	// limits caps what the credential may send. A field that is 0 or absent takes the
	// MailDomain's spec.sendingLimits, then the built-in default; -1 means unlimited.
	// +optional
	Limits *SendingLimits `json:"limits,omitempty"`

	// rotationToken rotates the password when it changes: set it to any new value, such
	// as today's date, and the operator replaces the Secret with a new password. The old
	// password stops working as soon as the relays apply the new config.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	RotationToken string `json:"rotationToken,omitempty"`
}

// SendingLimits caps what one credential may send through all the relays together, so
// that a leaked password cannot send without bound. For each field, 0 or absent means
// the default (on an SMTPCredential: its MailDomain's, then the built-in one), and -1
// means unlimited. The built-in defaults are those of the commercial gateways users
// know: 500 messages in 10 minutes and 2,500 a day (Proofpoint Essentials), 100
// recipients per message (the least RFC 5321 lets a server take) and 10,000 recipients a
// day (Microsoft 365's).
type SendingLimits struct {
	// messagesPerWindow is how many messages may be sent per window; over it, MAIL gets
	// 451 4.7.1 until the window moves on. Default 500.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	MessagesPerWindow int32 `json:"messagesPerWindow,omitempty"`

	// window is the length of the sliding window of messagesPerWindow, from 1m to 24h.
	// Default 10m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="window must be between 1m and 24h"
	Window *metav1.Duration `json:"window,omitempty"`

	// messagesPerDay is how many messages may be sent in any 24 hours; over it, MAIL gets
	// 550 5.7.1. Default 2500.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	MessagesPerDay int32 `json:"messagesPerDay,omitempty"`

	// recipientsPerMessage is how many recipients one message may have; a RCPT over it
	// gets 452 4.5.3, and the client sends the rest in another message. Default 100.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	RecipientsPerMessage int32 `json:"recipientsPerMessage,omitempty"`

	// recipientsPerDay is how many recipients may be sent to in any 24 hours; a RCPT
	// over it gets 550 5.7.1. Default 10000.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	RecipientsPerDay int32 `json:"recipientsPerDay,omitempty"`
}

// SMTPCredentialStatus is what the operator last observed about the credential.
// It never holds the password.
type SMTPCredentialStatus struct {
	// conditions: Accepted (in the relay config) and Ready (accepted by every relay).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// secretName is the Secret that holds the username and password.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// username is the generated SMTP AUTH username. It is not secret.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Username string `json:"username,omitempty"`

	// issuedAt is when the current password was generated.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// rotationToken is the spec.rotationToken the current password was issued for.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	RotationToken string `json:"rotationToken,omitempty"`

	// limitReached is the last time a relay refused the credential's mail for one of its
	// sending limits (written at most once an hour per limit).
	// +optional
	LimitReached *LimitReached `json:"limitReached,omitempty"`

	// usage is what the credential sent through all the relays in the last 24 hours, for
	// the credentials among the 200 busiest of a relay; written when it has moved by a
	// tenth of the daily limit, so it is as exact as that. The relays' metric
	// postwarden_relay_smtp_credential_messages_total counts every message.
	// +optional
	Usage *CredentialUsage `json:"usage,omitempty"`
}

// CredentialUsage is what a credential sent in the last 24 hours.
type CredentialUsage struct {
	// messages24h is the messages sent (accepted by the relays) in the last 24 hours.
	// +optional
	Messages24h int32 `json:"messages24h"`

	// recipients24h is their recipients.
	// +optional
	Recipients24h int32 `json:"recipients24h"`

	// percentOfDailyLimit is messages24h as a percentage of the credential's
	// messagesPerDay; 0 when it has no daily limit.
	// +optional
	PercentOfDailyLimit int32 `json:"percentOfDailyLimit"`

	// observedAt is when the relays reported these figures.
	// +optional
	ObservedAt *metav1.Time `json:"observedAt,omitempty"`
}

// LimitReached is a refusal for a sending limit.
type LimitReached struct {
	// limit is messages_per_window, messages_per_day, recipients_per_message or
	// recipients_per_day.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Limit string `json:"limit"`

	// at is when the relay refused.
	// +required
	At metav1.Time `json:"at"`

	// relay is the relay replica that refused.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Relay string `json:"relay,omitempty"`
}

// SMTPCredential is an SMTP AUTH username and password for sending through the relay
// on the submission port as one MailDomain's senders.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=smtpcred;smtpcreds,categories=postwarden
// +kubebuilder:printcolumn:name="Domain",type=string,JSONPath=`.spec.mailDomainRef.name`
// +kubebuilder:printcolumn:name="Label",type=string,JSONPath=`.spec.label`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// +kubebuilder:printcolumn:name="Sent 24h",type=integer,JSONPath=`.status.usage.messages24h`
// +kubebuilder:printcolumn:name="Of Daily Limit",type=string,JSONPath=`.status.usage.percentOfDailyLimit`,priority=1
// +kubebuilder:printcolumn:name="Limited",type=date,JSONPath=`.status.limitReached.at`
// +kubebuilder:printcolumn:name="Limit",type=string,JSONPath=`.status.limitReached.limit`,priority=1
// +kubebuilder:printcolumn:name="Username",type=string,JSONPath=`.status.username`,priority=1
// +kubebuilder:printcolumn:name="Issued",type=date,JSONPath=`.status.issuedAt`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SMTPCredential struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired credential.
	// +required
	Spec SMTPCredentialSpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status SMTPCredentialStatus `json:"status,omitempty"`
}

// SMTPCredentialList is a list of SMTPCredentials.
//
// +kubebuilder:object:root=true
type SMTPCredentialList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SMTPCredential `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SMTPCredential{}, &SMTPCredentialList{})
}
