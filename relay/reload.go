package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/directory"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// loaded is the config in force: immutable, swapped whole.
type loaded struct {
	snap      *snapshot.Snapshot
	dir       *directory.Directory
	appliedAt time.Time
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
}

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
	var dir *directory.Directory
	if prev != nil && prev.snap.Hash == u.Snapshot.Hash {
		dir = prev.dir // only the certificates changed
	} else if dir, err = directory.Build(u.Snapshot); err != nil {
		return r.refuse(u.Snapshot.Hash, fmt.Errorf("compiling snapshot: %w", err))
	}

	now := r.now()
	r.cur.Store(&loaded{snap: u.Snapshot, dir: dir, appliedAt: now})
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
