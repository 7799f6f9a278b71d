package testkit

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestReproducibleCAIsTheSameBytesEveryTime(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := NewCA(t, Reproducible(at)), NewCA(t, Reproducible(at))
	if a.PEM() != b.PEM() {
		t.Fatal("two reproducible CAs differ")
	}
	if !a.Cert.IsCA || a.Cert.Subject.CommonName != "Postwarden test CA" || !a.Cert.NotBefore.Equal(at) ||
		!a.Cert.NotAfter.Equal(at.AddDate(10, 0, 0)) || a.Cert.KeyUsage != x509.KeyUsageCertSign {
		t.Fatalf("CA %+v", a.Cert)
	}
	if NewCA(t).PEM() == NewCA(t).PEM() {
		t.Fatal("two random CAs are the same")
	}
}

func TestIssuedCertificatesVerify(t *testing.T) {
	ca := NewCA(t, CommonName("Other CA"))
	cert := ca.Leaf(t, "mx.example.com", "127.0.0.1")
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := cert.Leaf.Verify(opts); err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.Subject.CommonName != "mx.example.com" || cert.Leaf.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("leaf names: CN %q, DNS %v, IP %v", cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	if self := SelfSigned(t, "self.example"); self.Leaf.Issuer.CommonName != "self.example" {
		t.Fatalf("self-signed by %q", self.Leaf.Issuer.CommonName)
	}
}

func TestIssueOptions(t *testing.T) {
	ca, err := GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	from, to := time.Now().Add(-time.Minute).Truncate(time.Second), time.Now().Add(time.Hour).Truncate(time.Second)
	cert, err := ca.Issue(CommonName(""), Names("a.example", "::1"), Validity(from, to))
	if err != nil {
		t.Fatal(err)
	}
	l := cert.Leaf
	if l.Subject.CommonName != "" || len(l.DNSNames) != 1 || !l.IPAddresses[0].Equal(net.ParseIP("::1")) ||
		!l.NotBefore.Equal(from) || !l.NotAfter.Equal(to) {
		t.Fatalf("leaf %+v", l)
	}
	certPEM, keyPEM, err := EncodePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pair.Certificate[0], cert.Certificate[0]) {
		t.Fatal("the PEM does not round-trip")
	}
}
