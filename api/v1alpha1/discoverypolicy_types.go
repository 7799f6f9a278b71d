package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DiscoveryPolicySpec turns on SMTP Discovery for some MailDomains: the relay asks the
// domain's own mail server whether an unknown recipient exists (a verification callout),
// learns the addresses that receive clean mail, and retires those that stop.
//
// +kubebuilder:validation:XValidation:rule="!has(self.reportSchedule) || has(self.reportRecipients)",message="reportSchedule needs at least one reportRecipients address"
type DiscoveryPolicySpec struct {
	// mailDomainRefs names the MailDomains, in this namespace, that the policy covers.
	// A MailDomain may be covered by one DiscoveryPolicy only.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=500
	MailDomainRefs []MailDomainReference `json:"mailDomainRefs"`

	// enabled switches discovery on or off without deleting the policy. While off, unknown
	// recipients are rejected with 550 5.1.1. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// detectionThreshold is how many clean messages an address must receive within
	// detectionWindowDays before it becomes a discovered user. Defaults to 3.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	DetectionThreshold int32 `json:"detectionThreshold,omitempty"`

	// detectionWindowDays is the rolling window, in days, in which clean messages are
	// counted. Defaults to 30.
	// +optional
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=365
	DetectionWindowDays int32 `json:"detectionWindowDays,omitempty"`

	// expiryDays is how long, in days, a discovered address may stay below the threshold
	// before it expires. An expired address is rejected as invalid, unless
	// expiredAddressesBecomeUsers is set. Defaults to 21 (three weeks).
	// +optional
	// +kubebuilder:default=21
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=365
	ExpiryDays int32 `json:"expiryDays,omitempty"`

	// expiredAddressesBecomeUsers makes an expired address a new user instead of invalid.
	// +optional
	ExpiredAddressesBecomeUsers bool `json:"expiredAddressesBecomeUsers,omitempty"`

	// autoAddAliases records a discovered address as an alias when its local part matches
	// a known user of another covered MailDomain (jane.doe@example.net for
	// jane.doe@example.com).
	// +optional
	AutoAddAliases bool `json:"autoAddAliases,omitempty"`

	// autoAddOutboundUsers creates a user when a sending server relays mail from an
	// unknown address of a covered domain.
	// +optional
	AutoAddOutboundUsers bool `json:"autoAddOutboundUsers,omitempty"`

	// defaultRole is the role given to discovered users: EndUser (the default) or
	// SilentUser.
	// +optional
	// +kubebuilder:default=EndUser
	DefaultRole UserRole `json:"defaultRole,omitempty"`

	// maxAddressesPerDomain bounds what discovery tracks for one covered domain, so that
	// no flood of mail, real or forged, can grow the relays' in-memory directory without
	// limit. Beyond it, invalid then pending addresses are forgotten, least recently seen
	// first; once discovered users and aliases alone reach it, no further address is
	// promoted (pending ones expire as invalid) and status.limitedDomains names the
	// domain. Defaults to 50000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxAddressesPerDomain int32 `json:"maxAddressesPerDomain,omitempty"`

	// reportRecipients receive the weekly report of new users and aliases, sent through
	// the relay itself. The report is also recorded as an Event.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=254
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-z0-9#$&*+/=?^_{|}~-]+([.][a-z0-9#$&*+/=?^_{|}~-]+)*@[a-z0-9-]+([.][a-z0-9-]+)+$')",message="reportRecipients must be lower-case email addresses such as postmaster@example.com"
	ReportRecipients []string `json:"reportRecipients,omitempty"`

	// reportSchedule is when the weekly report goes out. Defaults to Monday 08:00 UTC.
	// +optional
	ReportSchedule *ReportSchedule `json:"reportSchedule,omitempty"`
}

// ReportSchedule is a weekly point in time.
type ReportSchedule struct {
	// dayOfWeek is the day the report is sent. Defaults to Monday.
	// +optional
	// +kubebuilder:default=Monday
	// +kubebuilder:validation:Enum=Monday;Tuesday;Wednesday;Thursday;Friday;Saturday;Sunday
	DayOfWeek string `json:"dayOfWeek,omitempty"`

	// timeOfDay is the UTC time of day, as HH:MM in 24-hour form. Defaults to 08:00.
	// +optional
	// +kubebuilder:default="08:00"
	// +kubebuilder:validation:MaxLength=5
	// +kubebuilder:validation:XValidation:rule="self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')",message="timeOfDay must be HH:MM in 24-hour form, such as 08:00"
	TimeOfDay string `json:"timeOfDay,omitempty"`
}

// DiscoveryPolicyStatus is what the operator last observed about the policy.
type DiscoveryPolicyStatus struct {
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

	// discovered counts the addresses being tracked, by state.
	// +optional
	Discovered DiscoveryCounts `json:"discovered,omitempty"`

	// recentAddresses are the discovered addresses that changed state most recently,
	// newest first. The full list is in stateConfigMaps.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	RecentAddresses []DiscoveredAddress `json:"recentAddresses,omitempty"`

	// stateConfigMaps names the ConfigMaps, in the operator's namespace, that hold every
	// tracked address (key addresses.jsonl, one JSON object per line). They live there,
	// not in the policy's namespace, so that only the operator can change what the relays
	// trust; ask a cluster admin for the full list, or read recentAddresses and the weekly
	// report.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=253
	StateConfigMaps []string `json:"stateConfigMaps,omitempty"`

	// catchAllDomains lists the covered domains whose mail server accepted a random
	// address no one has, in the last three days: its callouts cannot tell a real
	// mailbox from a made-up one, so discovery learns no new address of these domains
	// until the server refuses unknown recipients. List their users in the MailDomain
	// instead.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=253
	CatchAllDomains []string `json:"catchAllDomains,omitempty"`

	// limitedDomains lists the covered domains whose discovered users and aliases have
	// reached spec.maxAddressesPerDomain: no further address of them is discovered.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=253
	LimitedDomains []string `json:"limitedDomains,omitempty"`

	// lastMergeTime is when the relays' observations last changed the state.
	// +optional
	LastMergeTime *metav1.Time `json:"lastMergeTime,omitempty"`

	// lastReportTime is when the last weekly report was sent.
	// +optional
	LastReportTime *metav1.Time `json:"lastReportTime,omitempty"`
}

// DiscoveredAddress is one address SMTP Discovery tracks.
type DiscoveredAddress struct {
	// address is the discovered address.
	// +required
	// +kubebuilder:validation:MaxLength=254
	Address string `json:"address"`

	// state is Pending, User, Alias or Invalid.
	// +required
	// +kubebuilder:validation:MaxLength=16
	State string `json:"state"`

	// target is the user an Alias points to.
	// +optional
	// +kubebuilder:validation:MaxLength=254
	Target string `json:"target,omitempty"`

	// reason says why the address is in its state: Verified, Threshold, Outbound,
	// Expired or LocalPart.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Reason string `json:"reason,omitempty"`

	// since is when the address entered its state.
	// +required
	Since metav1.Time `json:"since"`
}

// DiscoveryCounts counts discovered addresses by state.
type DiscoveryCounts struct {
	// pending addresses were seen but have not reached the threshold yet.
	// +optional
	Pending int32 `json:"pending"`
	// users reached the threshold and are treated as registered users.
	// +optional
	Users int32 `json:"users"`
	// aliases were recorded as aliases of a known user.
	// +optional
	Aliases int32 `json:"aliases"`
	// invalid addresses expired or were refused by the domain's server.
	// +optional
	Invalid int32 `json:"invalid"`
}

// DiscoveryPolicy configures SMTP Discovery for a set of MailDomains.
//
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="a DiscoveryPolicy name has at most 63 characters: it labels the ConfigMaps that hold the policy's discovery state"
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=discpol,categories=postwarden
// +kubebuilder:printcolumn:name="Enabled",type=boolean,JSONPath=`.spec.enabled`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Threshold",type=integer,JSONPath=`.spec.detectionThreshold`
// +kubebuilder:printcolumn:name="Users",type=integer,JSONPath=`.status.discovered.users`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.discovered.pending`
// +kubebuilder:printcolumn:name="Domains",type=string,JSONPath=`.status.mailDomains`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DiscoveryPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired policy.
	// +required
	Spec DiscoveryPolicySpec `json:"spec"`

	// status is what the operator observed.
	// +optional
	Status DiscoveryPolicyStatus `json:"status,omitempty"`
}

// DiscoveryPolicyList is a list of DiscoveryPolicies.
//
// +kubebuilder:object:root=true
type DiscoveryPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DiscoveryPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DiscoveryPolicy{}, &DiscoveryPolicyList{})
}
