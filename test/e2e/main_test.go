package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/dev"
)

// The world the relay delivers to: two MX hosts on one port, on two loopback addresses,
// with certificates from mxCA; the one for wrong.test names another host.
var (
	env            *dev.Env
	mxGood, mxBad  *dev.Sink
	mxCAPEM        []byte
	kubectlTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	// Without KUBEBUILDER_ASSETS, dev.Start builds the control plane (cached) itself.
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "postwarden-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	ca, caKey, err := newCA()
	if err != nil {
		return 0, err
	}
	mxCAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	goodCert, err := leaf(ca, caKey, "mx.good.test")
	if err != nil {
		return 0, err
	}
	badCert, err := leaf(ca, caKey, "mx.somebody-else.test")
	if err != nil {
		return 0, err
	}
	if mxGood, err = dev.StartSink("127.0.0.2:0", dir+"/mx-good", nil, &tls.Config{Certificates: []tls.Certificate{goodCert}}); err != nil {
		return 0, err
	}
	defer mxGood.Close()
	_, port, _ := net.SplitHostPort(mxGood.Addr())
	if mxBad, err = dev.StartSink("127.0.0.3:"+port, dir+"/mx-bad", nil, &tls.Config{Certificates: []tls.Certificate{badCert}}); err != nil {
		return 0, err
	}
	defer mxBad.Close()
	mxPort, _ := strconv.Atoi(port)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	env, err = dev.Start(ctx, dev.Options{
		Dir:            dir,
		SubmissionAddr: "127.0.0.1:0",
		InboundAddr:    "127.0.0.1:0",
		SinkAddr:       "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:0",
		NoSamples:      true,
		NoSmarthost:    true,
		MXPort:         mxPort,
		Out:            os.Stderr,
		// Short, so that step 7 sees discovery reach the policy's status quickly.
		DiscoveryPublishInterval: 200 * time.Millisecond,
		DiscoveryMergeInterval:   300 * time.Millisecond,
	})
	if err != nil {
		return 0, fmt.Errorf("starting the system: %w", err)
	}
	defer env.Stop()
	// The domains' own server (the sink) has no mailbox nobody@: discovery callouts hear 550.
	env.Sink.SetRefuse(func(rcpt string) bool { return strings.HasPrefix(rcpt, "nobody@") })
	fmt.Printf("e2e: control plane, operator and relay up in %v\n", time.Since(start).Round(time.Millisecond))
	if err := env.DNS.Add(
		"good.test. 60 IN MX 10 mx.good.test.",
		"mx.good.test. 60 IN A 127.0.0.2",
		"wrong.test. 60 IN MX 10 mx.wrong.test.",
		"mx.wrong.test. 60 IN A 127.0.0.3",
	); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// kubectl runs the kubectl built beside kube-apiserver against the system.
func kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.Kubectl, append([]string{"--kubeconfig", env.Info.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e MX CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
