// Package tlscert serves the relay's STARTTLS certificates. A Set is indexed once per
// reload and held by the relay's compiled view; one static *tls.Config asks for the set
// in force on every handshake, so a renewed certificate reaches the next session without
// a restart, and a reload never touches a tls.Config in use.
package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Pair is the PEM material of one certificate, as read from a kubernetes.io/tls Secret
// or a pair of files. Name says where it came from, for logs and errors.
type Pair struct {
	Name    string
	CertPEM []byte
	KeyPEM  []byte
}

// Parse parses a PEM certificate chain and its private key, and fills in Leaf.
func Parse(p Pair) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", p.Name, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", p.Name, err)
		}
	}
	return &cert, nil
}

// Set is an immutable, indexed set of certificates.
type Set struct {
	exact    map[string]*tls.Certificate // lower-case DNS name
	wildcard map[string]*tls.Certificate // the parent domain of "*.parent"
	fallback *tls.Certificate
	certs    []*tls.Certificate
}

// NewSet indexes certs by the DNS names in their leaf certificates. The default, served
// to clients that send no SNI or an unknown name, is the first certificate that covers
// defaultName, or else the first one. When two certificates cover the same name, the
// one that expires later wins, so an overlapping renewal never serves the older one.
func NewSet(certs []*tls.Certificate, defaultName string) (*Set, error) {
	s := &Set{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, c := range certs {
		if c == nil || c.Leaf == nil {
			return nil, errors.New("certificate without a parsed leaf")
		}
		s.certs = append(s.certs, c)
		for _, name := range c.Leaf.DNSNames {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			index := s.exact
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				index, name = s.wildcard, parent
			}
			if old := index[name]; old == nil || c.Leaf.NotAfter.After(old.Leaf.NotAfter) {
				index[name] = c
			}
		}
	}
	if len(certs) > 0 {
		s.fallback = certs[0]
		if c := s.lookup(defaultName); c != nil {
			s.fallback = c
		}
	}
	return s, nil
}

// lookup finds the certificate for name: an exact name first, then a wildcard one
// label up. It returns nil when none covers name.
func (s *Set) lookup(name string) *tls.Certificate {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil
	}
	if c := s.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		return s.wildcard[parent]
	}
	return nil
}

// Len returns the number of certificates; a nil set has none.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.certs)
}

// EarliestExpiry returns the earliest NotAfter of the set, or the zero time when empty.
func (s *Set) EarliestExpiry() time.Time {
	var t time.Time
	if s == nil {
		return t
	}
	for _, c := range s.certs {
		if t.IsZero() || c.Leaf.NotAfter.Before(t) {
			t = c.Leaf.NotAfter
		}
	}
	return t
}

// GetCertificate picks the certificate for a handshake: by SNI (exact, then wildcard),
// else the default one. A nil or empty set has none to give.
func (s *Set) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s == nil || s.fallback == nil {
		return nil, errors.New("no certificate loaded")
	}
	if c := s.lookup(hello.ServerName); c != nil {
		return c, nil
	}
	return s.fallback, nil
}

// ServerConfig returns a server configuration that asks current for the set in force
// (nil: none loaded yet) on every handshake, so one static configuration serves every
// reload. TLS 1.2 is the minimum: older versions are broken, and every MTA still in use
// speaks 1.2.
func ServerConfig(current func() *Set) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return current().GetCertificate(hello)
		},
	}
}
