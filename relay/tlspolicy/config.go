package tlspolicy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Check records what a handshake showed about the peer. The tls.Config from ClientConfig
// fills it in during the handshake; read it once the handshake is over.
type Check struct {
	// Verified is true when the chain and a name verified.
	Verified bool
	// Err says why the peer did not verify; nil when Verified.
	Err error
}

// ClientConfig returns the client TLS configuration that enforces p when connecting to
// mxHost for mail to rcptDomain, and the Check that the handshake fills in.
//
// Every mode does its own verification in VerifyConnection, so that both the MX host
// name and the recipient domain are accepted as certificate names and the error says
// exactly why a peer failed. Opportunistic and RequireTLS only record the outcome;
// RequireVerifiedTLS fails the handshake with it.
func (p Policy) ClientConfig(mxHost, rcptDomain string) (*tls.Config, *Check) {
	check := &Check{}
	names := []string{trimDot(mxHost)}
	if d := trimDot(rcptDomain); d != "" && !strings.EqualFold(d, names[0]) {
		names = append(names, d)
	}
	enforce := p.Mode == RequireVerifiedTLS
	cfg := &tls.Config{
		// Verification happens in VerifyConnection below, with our own name rules.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		MinVersion:         p.MinVersion,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := Verify(cs.PeerCertificates, p.Roots, names...)
			check.Verified, check.Err = err == nil, err
			if enforce {
				return err
			}
			return nil
		},
	}
	if net.ParseIP(names[0]) == nil {
		cfg.ServerName = names[0]
	}
	if cfg.MinVersion == 0 {
		// Opportunistic TLS takes any version, as any beats the plaintext fallback;
		// a required mode with no stated minimum gets Go's default of TLS 1.2.
		cfg.MinVersion = tls.VersionTLS12
		if p.Mode == Opportunistic {
			cfg.MinVersion = tls.VersionTLS10
		}
	}
	return cfg, check
}

// Verify checks that certs (leaf first) chain to roots (nil: the system roots) and that
// the leaf is valid for one of names. Wildcards follow RFC 6125: "*" is a whole
// left-most label and stands for exactly one label.
func Verify(certs []*x509.Certificate, roots *x509.CertPool, names ...string) error {
	if len(certs) == 0 {
		return errors.New("no certificate presented")
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("certificate not trusted: %w", err)
	}
	for _, n := range names {
		if MatchesName(leaf, n) {
			return nil
		}
	}
	got := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		got = append(got, ip.String())
	}
	if len(got) == 0 {
		return fmt.Errorf("certificate name mismatch: got no subject alternative names, want %s", strings.Join(names, " or "))
	}
	return fmt.Errorf("certificate name mismatch: got %s, want %s", strings.Join(got, ", "), strings.Join(names, " or "))
}

// MatchesName reports whether the certificate's subject alternative names cover name.
// The common name is ignored, as RFC 6125 asks when SANs are present and as Go does.
func MatchesName(cert *x509.Certificate, name string) bool {
	name = strings.ToLower(trimDot(name))
	if ip := net.ParseIP(name); ip != nil {
		for _, c := range cert.IPAddresses {
			if c.Equal(ip) {
				return true
			}
		}
		return false
	}
	for _, san := range cert.DNSNames {
		if matchPattern(strings.ToLower(trimDot(san)), name) {
			return true
		}
	}
	return false
}

func matchPattern(pattern, name string) bool {
	if pattern == name {
		return name != ""
	}
	suffix, ok := strings.CutPrefix(pattern, "*.")
	// A wildcard needs at least two labels after it, so "*.com" matches nothing.
	if !ok || !strings.Contains(suffix, ".") || strings.Contains(suffix, "*") {
		return false
	}
	dot := strings.IndexByte(name, '.')
	return dot > 0 && name[dot+1:] == suffix
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }
