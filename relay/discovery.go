package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/discovery"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
)

// DiscoveryDir is the journal's folder inside the spool folder.
const DiscoveryDir = "discovery"

// DiscoveryConfig tunes SMTP Discovery; zero values take the discovery package's
// defaults.
type DiscoveryConfig struct {
	// CommandTimeout bounds each reply of a verification callout, CalloutTimeout a
	// whole callout.
	CommandTimeout, CalloutTimeout time.Duration
	// ShipInterval is how often observations are published to the operator (Kubernetes
	// only).
	ShipInterval time.Duration
}

// discoveryRecorder is the relay's side of SMTP Discovery: it decides which deliveries
// and outbound senders are worth an observation, and records them, with the
// verifier's callouts, in the journal.
type discoveryRecorder struct {
	journal *discovery.Journal
	metrics *metrics.Discovery
	log     *slog.Logger
	reload  *reloader
	now     func() time.Time
	// full is set while the journal refuses records for want of acknowledgements, so
	// that this is logged once rather than per observation.
	full atomic.Bool
}

var _ smtpd.Observer = (*discoveryRecorder)(nil)

// newDiscovery opens the journal in the spool folder and builds the verifier of the
// inbound listener; with a Kubernetes config source it also builds the shipper that
// publishes observations to the operator.
func (r *Relay) newDiscovery(cfg DiscoveryConfig, resolver *mx.Resolver) error {
	j, err := discovery.OpenJournal(filepath.Join(r.cfg.SpoolDir, DiscoveryDir), 0)
	if err != nil {
		return fmt.Errorf("opening the discovery journal: %w", err)
	}
	r.journal = j
	log := r.log.With("component", "discovery")
	rec := &discoveryRecorder{journal: j, log: log, reload: r.reload, now: time.Now}
	prober := discovery.Prober{
		HELOName:        r.cfg.Hostname,
		TLSPolicy:       r.reload.InboundTLS,
		CommandTimeout:  cfg.CommandTimeout,
		AllowedNetworks: r.cfg.OutboundAllowedNetworks,
		DeniedNetworks:  r.outboundDenied,
	}
	if resolver != nil {
		// The same resolvers as delivery (--dns-servers), not the system's.
		prober.Resolver = resolver
	}
	r.verifier = discovery.New(discovery.Options{
		Prober: prober, Recorder: rec, Logger: log, CalloutTimeout: cfg.CalloutTimeout,
	})
	rec.metrics = metrics.NewDiscovery(r.registry, func() metrics.DiscoveryStats {
		st := r.verifier.Stats()
		return metrics.DiscoveryStats{
			CacheHits: st.CacheHits, Coalesced: st.Coalesced, Limited: st.Limited,
			Accepted: st.Accepted, Refused: st.Refused, TempFailed: st.TempFailed,
			CacheEntries: st.CacheEntries, JournalPending: j.Pending(),
		}
	})
	r.discovery = rec
	switch {
	case r.cfg.KubeConfigName == "":
		log.Info("discovery observations stay in the journal: only a Kubernetes config source publishes them",
			"journal", filepath.Join(r.cfg.SpoolDir, DiscoveryDir, discovery.JournalFile))
	case r.cfg.PodName == "":
		log.Warn("discovery observations stay in the journal: publishing them needs the pod name (--pod-name)")
	default:
		r.shipper = &discovery.Shipper{
			Journal: j,
			Publisher: &discovery.ConfigMapPublisher{
				Client: r.cfg.Kube, Namespace: r.cfg.Namespace, PodName: r.cfg.PodName, PodUID: r.cfg.PodUID,
			},
			Relay: r.cfg.PodName, Interval: cfg.ShipInterval, Logger: log,
		}
	}
	return nil
}

// closeDiscovery stops callouts, then closes the journal; the listeners and delivery
// must be done by then.
func (r *Relay) closeDiscovery() {
	if r.verifier != nil {
		r.verifier.Close()
	}
	if r.journal != nil {
		if err := r.journal.Close(); err != nil {
			r.log.Error("closing the discovery journal", "error", err)
		}
	}
}

// Record implements discovery.Recorder: it records in the journal and counts. Failures
// are logged here, so it never returns one.
func (d *discoveryRecorder) Record(kind discoverystate.Kind, address string, at time.Time) error {
	err := d.journal.Record(kind, address, at)
	switch {
	case err == nil:
		d.metrics.Observations.WithLabelValues(string(kind)).Inc()
		if d.full.Swap(false) {
			d.log.Info("the discovery journal records again")
		}
	case errors.Is(err, discovery.ErrJournalFull):
		d.metrics.RecordErrors.Inc()
		if !d.full.Swap(true) {
			d.log.Error("dropping discovery observations", "error", err, "pending", d.journal.Pending())
		}
	default:
		d.metrics.RecordErrors.Inc()
		d.log.Error("recording a discovery observation", "kind", kind, "address", address, "error", err)
	}
	return nil
}

// Delivered is the delivery runner's hook: a message to rcpt was delivered to the
// domain's own server, which counts as a clean message for an address the directory
// does not list (accepted by a callout) or lists as discovered and Pending.
func (d *discoveryRecorder) Delivered(rcpt, direction string) {
	if direction != delivery.DirectionInbound {
		return
	}
	m, err := directory.ParseMailbox(rcpt)
	if err != nil {
		return
	}
	dir := d.reload.Directory()
	if dir == nil {
		return
	}
	e := dir.Lookup(m.Key())
	if e.Domain == nil || e.Domain.DiscoveryPolicy == "" {
		return
	}
	if e.Kind == directory.KindUnknown || e.Discovered && e.Kind == directory.KindPending {
		_ = d.Record(discoverystate.Delivered, m.Key(), d.now())
	}
}

// OutboundSender implements smtpd.Observer: a sending server used an address of its
// domain that the directory does not list as a user, which makes it a user when the
// domain's policy auto-adds outbound senders. Other policies would ignore the
// observation (the operator's merge, controllers/discovery/state), so it is not
// recorded for them.
func (d *discoveryRecorder) OutboundSender(e directory.Entry, sender string) {
	if e.Domain == nil || e.Domain.DiscoveryPolicy == "" {
		return
	}
	if e.Kind != directory.KindUnknown && !(e.Discovered && (e.Kind == directory.KindPending || e.Kind == directory.KindInvalid)) {
		return
	}
	if !d.reload.View().AutoAddsOutbound(e.Domain.DiscoveryPolicy) {
		return
	}
	_ = d.Record(discoverystate.OutboundSender, sender, d.now())
}
