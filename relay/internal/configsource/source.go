// Package configsource loads the relay's config snapshot and the STARTTLS certificates
// it names, and hands each new combination to a Sink. Two sources exist: a JSON file
// watched on disk (standalone use), and the sharded Secrets the operator writes, watched
// through the Kubernetes API so a change is enforced in well under a second (a mounted
// Secret volume would lag by a minute or more). The package also keeps the Lease through
// which a replica reports the snapshot it enforces.
package configsource

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Update is a validated snapshot with the PEM material of its certificates.
type Update struct {
	Snapshot *snapshot.Snapshot
	// Certificates holds every certificate that could be read: those the snapshot names,
	// then the extra files the relay was started with.
	Certificates []tlscert.Pair
	// Missing names the certificates the snapshot names that do not exist yet (a Secret
	// cert-manager has not issued). They are not an error: the relay serves the others.
	Missing []string
	// Credentials are what the domains' hops log in with, by the name the snapshot gives
	// them (snapshot.Endpoint.AuthSecret). A name without an entry is not available
	// yet: mail on that hop waits.
	Credentials map[string]outbound.Credentials
}

// Sink receives what a source loads. Sources call it from one goroutine at a time.
type Sink interface {
	// Apply installs u, or returns an error and keeps what it had.
	Apply(u Update) error
	// Refuse hears of a config that could not be read, parsed or assembled. The sink
	// keeps what it had.
	Refuse(err error)
}

// CertFiles is a certificate held in two PEM files.
type CertFiles struct {
	CertFile, KeyFile string
}

// read returns the pair, or an error wrapping os.ErrNotExist when a file is missing.
func (c CertFiles) read() (tlscert.Pair, error) {
	cert, err := os.ReadFile(c.CertFile)
	if err != nil {
		return tlscert.Pair{}, fmt.Errorf("reading certificate: %w", err)
	}
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return tlscert.Pair{}, fmt.Errorf("reading certificate key: %w", err)
	}
	return tlscert.Pair{Name: c.CertFile, CertPEM: cert, KeyPEM: key}, nil
}

// fingerprint identifies the content of an Update, so that an event that changed
// nothing (a resync, an unrelated Secret, an editor touching a file) is not applied again.
func fingerprint(u Update) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", u.Snapshot.Hash)
	for _, c := range u.Certificates {
		fmt.Fprintf(h, "%s\x00%d:%s%d:%s", c.Name, len(c.CertPEM), c.CertPEM, len(c.KeyPEM), c.KeyPEM)
	}
	for _, m := range u.Missing {
		fmt.Fprintf(h, "missing\x00%s\x00", m)
	}
	for _, name := range slices.Sorted(maps.Keys(u.Credentials)) {
		c := u.Credentials[name]
		fmt.Fprintf(h, "credentials\x00%s\x00%d:%s%d:%s", name, len(c.Username), c.Username, len(c.Password), c.Password)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// authSecrets lists the credentials the snapshot's hops log in with.
func authSecrets(s *snapshot.Snapshot) []string {
	var names []string
	for _, d := range s.Domains {
		for _, e := range []*snapshot.Endpoint{d.InboundDelivery, d.OutboundRoute} {
			if e != nil && e.AuthSecret != "" {
				names = append(names, e.AuthSecret)
			}
		}
	}
	return names
}
