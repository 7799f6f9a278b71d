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
	// Secrets are the relay secrets the snapshot names (see secretNames), each a map of
	// key to value, by name. A name without an entry is not available yet: mail on a hop
	// that logs in with it waits, and delivery events signed with it are dropped.
	Secrets map[string]SecretData
	// EventsCA is the PEM bundle of extra CAs that delivery event endpoints are verified
	// against besides the system roots (the relay's --delivery-events-ca-file, read
	// with every load so a change is applied like any other); nil without one.
	EventsCA []byte
}

// SecretData is one relay secret: the data of a Secret, or the files of a folder.
// compiled.View reads the keys each use needs.
type SecretData = map[string][]byte

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

// readEventsCA reads the file of Update.EventsCA; nil for no file. Unlike a certificate
// file, a missing one is an error: its path is the admin's, not a name that
// cert-manager has yet to fill, and endpoints that need it would fail unseen.
func readEventsCA(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("delivery events CA bundle: %w", err)
	}
	return data, nil
}

// fingerprint identifies the content of an Update, so that an event that changed
// nothing (a resync, an unrelated Secret, an editor touching a file) is not applied again.
func fingerprint(u Update) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", u.Snapshot.Hash)
	for _, c := range u.Certificates {
		fmt.Fprintf(h, "%s\x00%d:%s%d:%s", c.Name, len(c.CertPEM), c.CertPEM, len(c.KeyPEM), c.KeyPEM)
	}
	fmt.Fprintf(h, "eventsca\x00%d:%s", len(u.EventsCA), u.EventsCA)
	for _, m := range u.Missing {
		fmt.Fprintf(h, "missing\x00%s\x00", m)
	}
	for _, name := range slices.Sorted(maps.Keys(u.Secrets)) {
		data := u.Secrets[name]
		fmt.Fprintf(h, "secret\x00%s\x00", name)
		for _, k := range slices.Sorted(maps.Keys(data)) {
			fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(data[k]), data[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// secretNames lists the relay secrets the snapshot names: the credentials its hops log
// in with, the keys its delivery events are signed with, and its domains' DKIM keys.
func secretNames(s *snapshot.Snapshot) []string {
	var names []string
	for _, d := range s.Domains {
		for _, e := range []*snapshot.Endpoint{d.InboundDelivery, d.OutboundRoute} {
			if e != nil && e.AuthSecret != "" {
				names = append(names, e.AuthSecret)
			}
		}
		if w := d.DeliveryEvents; w != nil {
			names = append(names, w.SecretName)
		}
		for _, k := range d.DKIM {
			names = append(names, k.SecretName)
		}
	}
	return names
}
