package discovery

import (
	"time"

	"k8s.io/utils/clock"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Defaults of the discovery loop.
const (
	// DefaultMergeInterval bounds how often a policy's state is merged, and so how often
	// discovery alone changes the relay config.
	DefaultMergeInterval = time.Minute
	// DefaultGCAfter is how long a relay replica's Lease must have been expired (or
	// absent) before its acknowledged observations ConfigMap is deleted.
	DefaultGCAfter = 24 * time.Hour
)

// Options are what the loop needs from the operator's settings. The operator fills them
// from its flags; this package never reads them anywhere else.
type Options struct {
	// Namespace is the operator's namespace: the relays publish their observations and
	// Leases there, and the loop keeps the policies' state ConfigMaps and finds the
	// report and relay certificate Secrets there.
	Namespace string
	// MergeInterval bounds how often a pass runs (wall time); default DefaultMergeInterval.
	MergeInterval time.Duration
	// GCAfter is how long a relay must be gone before its observations are deleted;
	// default DefaultGCAfter.
	GCAfter time.Duration
	// Clock is SMTP Discovery's time (merges, expiry, the report schedule); nil is the
	// real clock. Tests move a fake one by days.
	Clock clock.PassiveClock

	// ReportRelay is the relay's submission address (host:port) the weekly reports are
	// mailed through; empty: reports are Events only.
	ReportRelay string
	// ReportServerName is the name the relay's certificate must carry.
	ReportServerName string
	// ReportSecret names the Secret holding the operator's report credential (keys
	// username and password).
	ReportSecret string
	// CertificateSecret names the relay certificate's Secret: its ca.crt, when there is
	// one, verifies the relay; otherwise the system roots do.
	CertificateSecret string

	// ManagerName is the operator's name, which its Events are recorded under.
	ManagerName string
	// FieldOwner owns the loop's writes.
	FieldOwner string
	// Labels go on every state ConfigMap the loop creates, beside the state label.
	Labels map[string]string
}

func (o Options) withDefaults() Options {
	if o.MergeInterval <= 0 {
		o.MergeInterval = DefaultMergeInterval
	}
	if o.GCAfter <= 0 {
		o.GCAfter = DefaultGCAfter
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Snapshots gives the loop the relay config last written: its DiscoveryPolicies are
// the policies merged, with the settings and domains the relays enforce. The config
// reconciler owns it; the loop only reads.
type Snapshots interface {
	// Snapshot is the last snapshot written, nil before the first render.
	Snapshot() *snapshot.Snapshot
}
