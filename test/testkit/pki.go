package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a throw-away certificate authority for tests.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// CertOption sets a field of a certificate that GenerateCA, NewCA or Issue makes.
type CertOption func(*certSpec)

type certSpec struct {
	names      []string
	commonName *string
	notBefore  time.Time
	notAfter   time.Time
	key        crypto.Signer // nil: a new P-256 key
	serial     *big.Int      // nil: a random one
}

// Names puts names in the certificate: DNS names such as "mx.example.com" or
// "*.example.com", and IP addresses such as "127.0.0.1". The first is also the common
// name, unless CommonName says otherwise.
func Names(names ...string) CertOption {
	return func(s *certSpec) { s.names = append(s.names, names...) }
}

// CommonName sets the subject's common name; "" leaves it empty, as cert-manager does
// for a Certificate without commonName.
func CommonName(cn string) CertOption { return func(s *certSpec) { s.commonName = &cn } }

// Validity sets the certificate's validity. Without it a certificate is valid from an
// hour ago for a day.
func Validity(notBefore, notAfter time.Time) CertOption {
	return func(s *certSpec) { s.notBefore, s.notAfter = notBefore, notAfter }
}

// Reproducible makes the certificate the same bytes on every run, for golden files: an
// Ed25519 key from a fixed seed (Ed25519 signatures are deterministic), serial number
// 1, and ten years of validity from notBefore.
func Reproducible(notBefore time.Time) CertOption {
	return func(s *certSpec) {
		s.key = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		s.serial = big.NewInt(1)
		s.notBefore, s.notAfter = notBefore, notBefore.AddDate(10, 0, 0)
	}
}

// GenerateCA creates a CA named "Postwarden test CA" (unless CommonName says otherwise),
// valid from an hour ago for a day (unless Validity or Reproducible says otherwise).
func GenerateCA(opts ...CertOption) (*CA, error) {
	spec, key, err := newSpec(append([]CertOption{CommonName("Postwarden test CA")}, opts...))
	if err != nil {
		return nil, err
	}
	tmpl := spec.template()
	tmpl.KeyUsage = x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating a test CA: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// NewCA is GenerateCA for tests: it fails t on error.
func NewCA(t TB, opts ...CertOption) *CA {
	t.Helper()
	ca, err := GenerateCA(opts...)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return ca
}

// PEM returns the CA certificate in PEM form, as a TLS policy's CA bundle holds it.
func (ca *CA) PEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a server certificate (digital signature, server auth) with the CA. Its
// Leaf field holds the parsed certificate.
func (ca *CA) Issue(opts ...CertOption) (tls.Certificate, error) {
	return issue(opts, ca.Cert, ca.key)
}

// Leaf issues a server certificate for names, signed by the CA, and fails t on error.
func (ca *CA) Leaf(t TB, names ...string) tls.Certificate {
	t.Helper()
	cert, err := ca.Issue(Names(names...))
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return cert
}

// SelfSigned returns a self-signed server certificate for names.
func SelfSigned(t TB, names ...string) tls.Certificate {
	t.Helper()
	cert, err := issue([]CertOption{Names(names...)}, nil, nil)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return cert
}

// EncodePEM returns cert's chain and its key (PKCS #8) in PEM form, as tls.crt and
// tls.key files and kubernetes.io/tls Secrets hold them.
func EncodePEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the key: %w", err)
	}
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// issue makes a server certificate, signed by parent or, when parent is nil, by itself.
func issue(opts []CertOption, parent *x509.Certificate, parentKey crypto.Signer) (tls.Certificate, error) {
	spec, key, err := newSpec(opts)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := spec.template()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	leaf, err := sign(tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing a test certificate for %v: %w", spec.names, err)
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// newSpec applies opts over the defaults and returns the spec and its key.
func newSpec(opts []CertOption) (*certSpec, crypto.Signer, error) {
	now := time.Now()
	s := &certSpec{notBefore: now.Add(-time.Hour), notAfter: now.Add(24 * time.Hour)}
	for _, o := range opts {
		o(s)
	}
	if s.serial == nil {
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		if err != nil {
			return nil, nil, fmt.Errorf("generating a serial number: %w", err)
		}
		s.serial = n
	}
	if s.key != nil {
		return s, s.key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a test key: %w", err)
	}
	return s, key, nil
}

func (s *certSpec) template() *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: s.serial, NotBefore: s.notBefore, NotAfter: s.notAfter}
	switch {
	case s.commonName != nil:
		tmpl.Subject = pkix.Name{CommonName: *s.commonName}
	case len(s.names) > 0:
		tmpl.Subject = pkix.Name{CommonName: s.names[0]}
	}
	for _, n := range s.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
