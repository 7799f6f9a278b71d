package snapshot

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// LeaseExpiry is when a relay replica's status Lease expires: renewTime +
// leaseDurationSeconds. False when either is missing: a Lease never renewed, or
// without a duration, is not a live replica's.
func LeaseExpiry(l *coordinationv1.Lease) (time.Time, bool) {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return time.Time{}, false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second), true
}

// AnnotationLoginFailures on a relay's status Lease lists, as JSON ([]LoginFailure),
// the hops whose login failed on that replica lately, so the operator can tell the
// MailDomain's owner. Bounded: at most MaxLoginFailures entries, reasons cut to
// MaxLoginFailureReason bytes.
const AnnotationLoginFailures = "relay.postwarden.dev/login-failures"

// Bounds of AnnotationLoginFailures, which rides on every Lease renewal.
const (
	MaxLoginFailures      = 50
	MaxLoginFailureReason = 300
)

// LoginFailure is a hop (Endpoint.AuthSecret) that could not log in: its credentials
// were missing, the server refused them, or it offered no TLS to send them over.
type LoginFailure struct {
	AuthSecret string    `json:"authSecret"`
	Host       string    `json:"host"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// AnnotationLimitHits on a relay's status Lease lists, as JSON ([]LimitHit), the
// credentials that replica refused for a sending limit lately: the operator tells each
// SMTPCredential's owner, since a credential over its limits may be a leaked one. One
// entry per credential and limit, the latest; at most MaxLimitHits.
const AnnotationLimitHits = "relay.postwarden.dev/limit-hits"

// MaxLimitHits bounds AnnotationLimitHits, which rides on every Lease renewal.
const MaxLimitHits = 50

// LimitHit is a credential refused for a limit: one of the names of
// relay/internal/sendlimit (messages_per_window, messages_per_day,
// recipients_per_message, recipients_per_day).
type LimitHit struct {
	Credential ObjectRef `json:"credential"`
	Username   string    `json:"username"`
	Limit      string    `json:"limit"`
	At         time.Time `json:"at"`
}

// AnnotationCredentialUsage on a relay's status Lease lists, as JSON
// ([]CredentialUsage), what the credentials that send most through that replica sent
// in the last 24 hours: at most MaxUsageReports, the busiest first. The operator adds
// the replicas' reports up into each SMTPCredential's status.usage.
const AnnotationCredentialUsage = "relay.postwarden.dev/credential-usage"

// MaxUsageReports bounds AnnotationCredentialUsage, which rides on every Lease renewal.
const MaxUsageReports = 200

// CredentialUsage is what one credential sent through one replica in the last 24 hours.
type CredentialUsage struct {
	Credential ObjectRef `json:"credential"`
	Username   string    `json:"username"`
	Messages   int       `json:"messages"`
	Recipients int       `json:"recipients"`
}
