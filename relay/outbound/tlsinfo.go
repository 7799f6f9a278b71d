package outbound

import (
	"crypto/tls"
	"strings"
)

// TLSInfo describes the TLS of a session.
type TLSInfo struct {
	// Version and Cipher are zero for a plaintext session.
	Version uint16
	Cipher  uint16
	// Verified says the certificate chain and a name (the host, the server name or the
	// recipient domain) verified; VerifyError says why not.
	Verified    bool
	VerifyError string
	// PlaintextFallback is set when an opportunistic handshake failed and the session
	// went on in plaintext.
	PlaintextFallback bool
}

// Encrypted reports whether the session runs over TLS.
func (t TLSInfo) Encrypted() bool { return t.Version != 0 }

// VersionName is "TLS1.3" and the like, or "none".
func (t TLSInfo) VersionName() string {
	if t.Version == 0 {
		return "none"
	}
	return strings.ReplaceAll(tls.VersionName(t.Version), " ", "")
}

// CipherName is the cipher suite's name, or "none".
func (t TLSInfo) CipherName() string {
	if t.Version == 0 {
		return "none"
	}
	return tls.CipherSuiteName(t.Cipher)
}
