package relay

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// loaded is the config in force: immutable, swapped whole.
type loaded struct {
	snap      *snapshot.Snapshot
	dir       *directory.Directory
	appliedAt time.Time
	// tls are the snapshot's TLS policies, for verification callouts; tlsErr says why
	// they do not compile (delivery then defers, and callouts cannot satisfy them).
	tls    *tlspolicy.Matcher
	tlsErr error
}

// reloader is the configsource.Sink of the relay. Each update is parsed and compiled in
// full (directory, certificates) before anything is swapped in, so a bad update leaves
// the previous config in force; sessions pin the directory current when they start.
type reloader struct {
	hostname string
	log      *slog.Logger
	metrics  *metrics.Config
	certs    *tlscert.Store
	now      func() time.Time
	// applied, when set, hears of each applied update (the status Lease is renewed).
	applied func()

	cur atomic.Pointer[loaded]
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
	prev := r.cur.Load()
	next := &loaded{snap: u.Snapshot}
	if prev != nil && prev.snap.Hash == u.Snapshot.Hash {
		next.dir, next.tls, next.tlsErr = prev.dir, prev.tls, prev.tlsErr // only the certificates changed
	} else {
		if next.dir, err = directory.Build(u.Snapshot); err != nil {
			return r.refuse(u.Snapshot.Hash, fmt.Errorf("compiling snapshot: %w", err))
		}
		if next.tls, next.tlsErr = tlspolicy.Compile(u.Snapshot.TLSPolicies); next.tlsErr != nil {
			r.log.Error("the snapshot's TLS policies do not compile: delivery and callouts will defer", "error", next.tlsErr)
		}
	}
	dir := next.dir

	now := r.now()
	next.appliedAt = now
	r.cur.Store(next)
	r.firstOnce.Do(func() { close(r.first) })
	r.certs.Swap(set)
	r.metrics.Applied(u.Snapshot.Hash, now)
	r.metrics.Certificates.Set(float64(set.Len()))
	if exp := set.EarliestExpiry(); !exp.IsZero() {
		r.metrics.CertificateExpiry.Set(float64(exp.Unix()))
	} else {
		r.metrics.CertificateExpiry.Set(0)
	}
	domains, addresses, credentials := dir.Counts()
	attrs := []any{"hash", short(u.Snapshot.Hash), "domains", domains, "addresses", addresses,
		"credentials", credentials, "certificates", set.Len()}
	if len(u.Missing) > 0 {
		attrs = append(attrs, "missingCertificates", u.Missing)
	}
	r.log.Info("config applied", attrs...)
	if r.applied != nil {
		r.applied()
	}
	return nil
}

// Refuse records a config the source could not read or assemble.
func (r *reloader) Refuse(err error) {
	_ = r.refuse("", err)
}

func (r *reloader) refuse(hash string, err error) error {
	r.metrics.Refused(r.now())
	attrs := []any{"error", err}
	if hash != "" {
		attrs = append(attrs, "hash", short(hash))
	}
	if cur := r.cur.Load(); cur != nil {
		attrs = append(attrs, "keeping", short(cur.snap.Hash))
	} else {
		attrs = append(attrs, "keeping", "nothing (not ready)")
	}
	r.log.Error("config refused", attrs...)
	return err
}

// Directory returns the directory in force; nil before the first load, which smtpd
// treats as empty.
func (r *reloader) Directory() *directory.Directory {
	if cur := r.cur.Load(); cur != nil {
		return cur.dir
	}
	return nil
}

// Snapshot returns the snapshot in force, or nil before the first load. Delivery reads
// its TLS policies and domains through it.
func (r *reloader) Snapshot() *snapshot.Snapshot {
	if cur := r.cur.Load(); cur != nil {
		return cur.snap
	}
	return nil
}

// unusableTLS is the Inbound policy of every domain when the TLS policies do not
// compile: it needs a certificate that nothing verifies, so callouts defer rather than
// ignore a policy.
var unusableTLS = tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, Roots: x509.NewCertPool(), Source: "(unusable TLS policies)"}

// InboundTLS returns the Inbound TLS policy of a managed domain: how delivery and
// verification callouts speak to the domain's own server.
func (r *reloader) InboundTLS(domain string) tlspolicy.Policy {
	cur := r.cur.Load()
	switch {
	case cur == nil:
		return tlspolicy.Default
	case cur.tlsErr != nil:
		return unusableTLS
	}
	return cur.tls.Lookup(snapshot.DirectionInbound, domain, domain)
}

// autoAddsOutbound reports whether the discovery policy name makes the unknown senders
// of sending servers users.
func (r *reloader) autoAddsOutbound(name string) bool {
	if cur := r.cur.Load(); cur != nil {
		for _, p := range cur.snap.DiscoveryPolicies {
			if p.Name == name {
				return p.AutoAddOutboundUsers
			}
		}
	}
	return false
}

// Hash returns the hash of the snapshot in force, or "".
func (r *reloader) Hash() string {
	if cur := r.cur.Load(); cur != nil {
		return cur.snap.Hash
	}
	return ""
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
