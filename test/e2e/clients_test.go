package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postwarden/postwarden/test/dev"
)

// rcptOnPort25 asks the relay's inbound port about one recipient and returns the code.
func rcptOnPort25(t testing.TB, rcpt string) int {
	t.Helper()
	c, err := smtp.Dial(env.Info.Inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("sender@elsewhere.example", nil); err != nil {
		t.Fatal(err)
	}
	code := 250
	if err := c.Rcpt(rcpt, nil); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatal(err)
		}
		code = se.Code
	}
	_ = c.Quit()
	return code
}

// swaksSubmission sends with swaks, a real client that is not Go's.
func swaksSubmission(t *testing.T, user, pass, sender string) {
	t.Run("swaks sends through submission", func(t *testing.T) {
		swaks := lookSwaks(t)
		out, err := exec.CommandContext(t.Context(), swaks, "--server", env.Info.Submission, "--tls", "--tls-verify",
			"--tls-ca-path", env.Info.CAFile, "--tls-sni", dev.RelayHostname,
			"--auth", "PLAIN", "--auth-user", user, "--auth-password", pass, "--auth-hide-password",
			"--from", sender, "--to", "carol@good.test", "--header", "Message-ID: <e2e-swaks@dev.postwarden>").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if m := waitMessage(t, mxGood, "e2e-swaks"); m.TLS == nil {
			t.Errorf("swaks' mail reached the MX without TLS")
		}
	})
}

// relayCAFromSecret reads ca.crt from the Secret of the relay's Certificate, as a user
// would to verify the relay.
func relayCAFromSecret(t testing.TB) *x509.CertPool {
	t.Helper()
	var s corev1.Secret
	if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: dev.OperatorNamespace, Name: dev.CertificateName + "-tls"}, &s); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatalf("the relay certificate's Secret has no ca.crt")
	}
	return pool
}

func submit(pool *x509.CertPool, user, pass, from, to, msg string) error {
	c, err := smtp.DialStartTLS(env.Info.Submission, &tls.Config{ServerName: dev.RelayHostname, RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// lookSwaks finds swaks; in CI a missing swaks fails the test instead of skipping it.
func lookSwaks(t *testing.T) string {
	path, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swaks is not installed (make test-deps installs it)")
		}
		t.Skip("swaks is not installed: run make test-deps")
	}
	return path
}
