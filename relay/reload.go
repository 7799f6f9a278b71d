package relay

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// reloader is the configsource.Sink of the relay. Each update is compiled in full into a
// compiled.View (directory, TLS policies, certificates) before anything is swapped in, so
// a bad update leaves the previous view in force. smtpd, delivery and discovery all read
// the view in force; sessions pin its directory when they start.
type reloader struct {
	hostname string
	log      *slog.Logger
	metrics  *metrics.Config
	now      func() time.Time
	// applied, when set, hears of each applied update (the status Lease is renewed).
	applied func()

	// eventsCA is the last delivery events CA bundle compiled, eventsPool its pool and
	// eventsCAs its certificates, so an unchanged bundle keeps its pool (and the events
	// sender its connections).
	eventsCA   []byte
	eventsPool *x509.CertPool
	eventsCAs  int

	cur atomic.Pointer[compiled.View]
	// first is closed when the first config is applied (see newReloader).
	first     chan struct{}
	firstOnce sync.Once
}

// Loaded is closed once a config has been applied.
func (r *reloader) Loaded() <-chan struct{} { return r.first }

var _ configsource.Sink = (*reloader)(nil)

// Apply compiles u and swaps it in, or keeps the current config and returns why not.
func (r *reloader) Apply(u configsource.Update) error {
	certs := make([]*tls.Certificate, 0, len(u.Certificates))
	for _, p := range u.Certificates {
		c, err := tlscert.Parse(p)
		if err != nil {
			return r.refuse(u.Snapshot.Hash, err)
		}
		if r.now().After(c.Leaf.NotAfter) {
			r.log.Warn("certificate has expired", "certificate", p.Name, "notAfter", c.Leaf.NotAfter)
		}
		certs = append(certs, c)
	}
	set, err := tlscert.NewSet(certs, r.hostname)
	if err != nil {
		return r.refuse(u.Snapshot.Hash, err)
	}
	eventRoots, err := r.eventRoots(u.EventsCA)
	if err != nil {
		return r.refuse(u.Snapshot.Hash, err)
	}
	prev := r.cur.Load()
	var next *compiled.View
	if prev != nil && prev.Hash() == u.Snapshot.Hash {
		next = prev.WithSecrets(set, u.Secrets) // only certificates or relay secrets changed
	} else {
		if next, err = compiled.BuildFrom(prev, u.Snapshot, set, u.Secrets); err != nil {
			return r.refuse(u.Snapshot.Hash, fmt.Errorf("compiling snapshot: %w", err))
		}
		if err := next.TLSErr(); err != nil {
			r.log.Error("the snapshot's TLS policies do not compile: delivery and callouts will defer", "error", err)
		}
	}
	next = next.WithEventRoots(eventRoots)

	// Each unusable DKIM key is logged when it becomes unusable, not at every update
	// while it stays so.
	known := map[string]bool{}
	for _, p := range prev.DKIM().Problems() {
		known[p] = true
	}
	for _, p := range next.DKIM().Problems() {
		if !known[p] {
			r.log.Warn("a DKIM key is not usable: mail goes out without its signature", "problem", p)
		}
	}

	now := r.now()
	r.cur.Store(next)
	r.firstOnce.Do(func() { close(r.first) })
	r.metrics.Applied(u.Snapshot.Hash, now)
	r.metrics.Certificates.Set(float64(set.Len()))
	if exp := set.EarliestExpiry(); !exp.IsZero() {
		r.metrics.CertificateExpiry.Set(float64(exp.Unix()))
	} else {
		r.metrics.CertificateExpiry.Set(0)
	}
	domains, addresses, credentials := next.Directory().Counts()
	attrs := []any{"hash", snapshot.ShortHash(u.Snapshot.Hash), "domains", domains, "addresses", addresses,
		"credentials", credentials, "certificates", set.Len()}
	if u.EventsCA != nil {
		attrs = append(attrs, "deliveryEventsCAs", r.eventsCAs)
	}
	if len(u.Missing) > 0 {
		attrs = append(attrs, "missingCertificates", u.Missing)
	}
	r.log.Info("config applied", attrs...)
	if r.applied != nil {
		r.applied()
	}
	return nil
}

// eventRoots returns the pool of the delivery events CA bundle (eventRootsFrom); nil,
// the system roots alone, without a bundle. An unchanged bundle keeps its pool. A
// bundle that does not parse is an error, which refuses the whole update, as a
// certificate that does not parse does: the view in force keeps its pool.
func (r *reloader) eventRoots(bundle []byte) (*x509.CertPool, error) {
	if bundle == nil {
		return nil, nil
	}
	if r.eventsPool != nil && bytes.Equal(bundle, r.eventsCA) {
		return r.eventsPool, nil
	}
	pool, n, err := eventRootsFrom(bundle)
	if err != nil {
		return nil, err
	}
	r.eventsCA, r.eventsPool, r.eventsCAs = bytes.Clone(bundle), pool, n
	return pool, nil
}

// Refuse records a config the source could not read or assemble.
func (r *reloader) Refuse(err error) {
	_ = r.refuse("", err)
}

func (r *reloader) refuse(hash string, err error) error {
	r.metrics.Refused(r.now())
	attrs := []any{"error", err}
	if hash != "" {
		attrs = append(attrs, "hash", snapshot.ShortHash(hash))
	}
	if cur := r.cur.Load(); cur != nil {
		attrs = append(attrs, "keeping", snapshot.ShortHash(cur.Hash()))
	} else {
		attrs = append(attrs, "keeping", "nothing (not ready)")
	}
	r.log.Error("config refused", attrs...)
	return err
}

// View returns the view in force, or nil before the first load (whose methods answer as
// for an empty config).
func (r *reloader) View() *compiled.View { return r.cur.Load() }

// Directory returns the directory in force; nil before the first load, which smtpd
// treats as empty.
func (r *reloader) Directory() *directory.Directory { return r.cur.Load().Directory() }

// Certificates returns the STARTTLS certificates in force; nil before the first load.
func (r *reloader) Certificates() *tlscert.Set { return r.cur.Load().Certificates() }

// InboundTLS returns the Inbound TLS policy of a managed domain in the view in force:
// how verification callouts speak to the domain's own server.
func (r *reloader) InboundTLS(domain string) tlspolicy.Policy { return r.cur.Load().InboundTLS(domain) }

// Hash returns the hash of the snapshot in force, or "".
func (r *reloader) Hash() string { return r.cur.Load().Hash() }

// DKIM returns the DKIM keys in force; nil (no keys) before the first load.
func (r *reloader) DKIM() *dkim.Keyring { return r.cur.Load().DKIM() }
