package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/dev"
)

const (
	// enforceWithin is the deadline of the "within 1 s" checks: generous, because the
	// machine is shared; the measured time is printed.
	enforceWithin = 10 * time.Second
)

// objects are what the user applies: a domain, a credential, the MX CA and two
// delivery policies.
func objects(ns, domain, wrongMode string) string {
	_, sinkPort, _ := strings.Cut(env.Sink.Addr(), ":")
	// The same CA as good.test's: only the MX's name is wrong.
	caRef := ""
	if wrongMode == "RequireVerifiedTLS" {
		caRef = "  caBundleSecretRef: {name: mx-ca, key: ca.crt}\n"
	}
	return fmt.Sprintf(`apiVersion: relay.postwarden.dev/v1alpha1
kind: MailDomain
metadata: {name: shop-test, namespace: %[1]s}
spec:
  domain: %[6]s
  users: [{address: ann@%[6]s}]
  functionalAccounts: [{address: orders@%[6]s}]
  inboundDelivery: {host: 127.0.0.1, port: %[2]s}
---
apiVersion: relay.postwarden.dev/v1alpha1
kind: SMTPCredential
metadata: {name: orders-app, namespace: %[1]s}
spec:
  mailDomainRef: {name: shop-test}
  label: orders app
  allowedSenders: [orders@%[6]s]
  secretName: orders-app-smtp
---
apiVersion: v1
kind: Secret
metadata: {name: mx-ca, namespace: %[1]s}
stringData:
  ca.crt: |
%[3]s
---
apiVersion: relay.postwarden.dev/v1alpha1
kind: TLSDeliveryPolicy
metadata: {name: good-verified, namespace: %[1]s}
spec:
  direction: Outbound
  mailDomainRefs: [{name: shop-test}]
  destinations: [good.test]
  mode: RequireVerifiedTLS
  caBundleSecretRef: {name: mx-ca, key: ca.crt}
---
apiVersion: relay.postwarden.dev/v1alpha1
kind: TLSDeliveryPolicy
metadata: {name: wrong-tls, namespace: %[1]s}
spec:
  direction: Outbound
  mailDomainRefs: [{name: shop-test}]
  destinations: [wrong.test]
  mode: %[4]s
%[5]s`, ns, sinkPort, indent(string(mxCAPEM), "    "), wrongMode, caRef, domain)
}

// TestUserStory walks through what a cluster admin and a mail client do, in order, and
// prints how long each change took to be enforced.
func TestUserStory(t *testing.T) {
	story(t, int(runs.Add(1)), report)
}

// runs numbers the stories, each in its own namespace and domain, so -count=N works.
var runs atomic.Int64

// BenchmarkUserStory repeats the story and reports the mean time each change took to be
// enforced, so the figures show in `go test -bench` output.
func BenchmarkUserStory(b *testing.B) {
	sums := map[string]time.Duration{}
	n := 0
	for b.Loop() {
		n++
		story(b, int(runs.Add(1)), func(what string, d time.Duration) { sums[what] += d })
	}
	for what, d := range sums {
		b.ReportMetric(float64(d.Microseconds())/1000/float64(n), "ms/"+metricUnit(what))
	}
}

// story is the user's story in namespace shop-<run>, for domain shop<run>.test.
func story(t testing.TB, run int, report func(string, time.Duration)) {
	ctx := t.Context()
	ns, domain := fmt.Sprintf("shop-%d", run), fmt.Sprintf("shop%d.test", run)
	sender := "orders@" + domain
	id := func(name string) string { return fmt.Sprintf("e2e-%s-%d", name, run) }
	kubectl(t, "", "create", "namespace", ns)

	// 1, 2: kubectl apply; the credential's Secret appears and the login works.
	applied := time.Now()
	kubectl(t, objects(ns, domain, "RequireTLS"), "apply", "--server-side", "-f", "-")
	user, pass, err := env.WaitCredential(ctx, ns, "orders-app-smtp")
	if err != nil {
		t.Fatal(err)
	}
	report("apply -> credential Secret written", time.Since(applied))
	if err := env.WaitLogin(ctx, user, pass, true); err != nil {
		t.Fatal(err)
	}
	report("apply -> first login accepted", time.Since(applied))
	waitPolicyReady(t, ns, "good-verified")
	waitPolicyReady(t, ns, "wrong-tls")

	// 3: STARTTLS verified against the CA from the Certificate's Secret, AUTH, send.
	pool := relayCAFromSecret(t)
	msg := dev.NewMessage(sender, "bob@good.test", "order 1", id("good"))
	if err := submit(pool, user, pass, sender, "bob@good.test", msg); err != nil {
		t.Fatalf("submitting: %v", err)
	}
	sent := time.Now()

	// 4: it reaches good.test's MX, found through the loopback DNS server, over TLS the
	// relay verified, as the policy requires.
	got := waitMessage(t, mxGood, id("good"))
	report("submission -> arrival at the good.test MX", time.Since(sent))
	if !got.TLS {
		t.Errorf("good.test's MX got the mail without TLS, though the policy requires verified TLS")
	}
	// The MX has the mail a moment before the relay's transaction ends and is counted.
	err = dev.Poll(ctx, enforceWithin, func() error {
		if metric(t, "tls_transactions_total", `policy="`+ns+`/good-verified"`, `verified="true"`) < 1 {
			return fmt.Errorf("the relay counted no verified TLS transaction to good.test")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	if t, ok := t.(*testing.T); ok {
		swaksSubmission(t, user, pass, sender)
	}

	// 5: RequireTLS lets the wrong-name MX have mail; RequireVerifiedTLS defers it.
	if err := submit(pool, user, pass, sender, "dave@wrong.test", dev.NewMessage(sender, "dave@wrong.test", "before", id("wrong-before"))); err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, mxBad, id("wrong-before")); !m.TLS {
		t.Errorf("under RequireTLS the mail went without TLS")
	}
	changed := time.Now()
	kubectl(t, objects(ns, domain, "RequireVerifiedTLS"), "apply", "--server-side", "-f", "-")
	waitPolicyReady(t, ns, "wrong-tls")
	report("policy -> RequireVerifiedTLS reported enforced", time.Since(changed))
	deferred := metric(t, "recipients_total", `result="deferred"`)
	if err := submit(pool, user, pass, sender, "dave@wrong.test", dev.NewMessage(sender, "dave@wrong.test", "after", id("wrong-after"))); err != nil {
		t.Fatal(err)
	}
	sent = time.Now()
	err = dev.Poll(ctx, enforceWithin, func() error {
		if metric(t, "recipients_total", `result="deferred"`) <= deferred {
			return fmt.Errorf("not deferred yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the mail to the wrong-name MX was not deferred within %v: %v", enforceWithin, err)
	}
	report("submission -> deferral (wrong-name MX, RequireVerifiedTLS)", time.Since(sent))
	report("policy change -> deferral", time.Since(changed))
	for _, m := range mxBad.Messages() {
		if bytes.Contains(m.Data, []byte("<"+id("wrong-after")+"@")) {
			t.Errorf("the wrong-name MX got the mail that RequireVerifiedTLS must defer")
		}
	}

	// 6: deleting the credential makes AUTH fail.
	deleted := time.Now()
	kubectl(t, "", "delete", "smtpcredential", "orders-app", "-n", ns, "--wait=false")
	wctx, cancel := context.WithTimeout(ctx, enforceWithin)
	defer cancel()
	if err := env.WaitLogin(wctx, user, pass, false); err != nil {
		t.Fatal(err)
	}
	report("delete credential -> AUTH refused", time.Since(deleted))

	// 7: an unknown recipient of the domain goes through a discovery callout to the
	// domain's own server (the sink), is accepted, delivered, and learned.
	discovery(t, ns, domain, report)

	// 8: the relay's certificate is renewed; new sessions see it with no restart.
	_, before, err := env.DialSubmission()
	if err != nil {
		t.Fatal(err)
	}
	renewed := time.Now()
	if err := env.Issuer.Reissue(ctx, dev.OperatorNamespace, dev.CertificateName); err != nil {
		t.Fatal(err)
	}
	err = dev.Poll(ctx, enforceWithin, func() error {
		c, cert, err := env.DialSubmission()
		if err != nil {
			return err
		}
		_ = c.Quit()
		if cert.SerialNumber.Cmp(before.SerialNumber) == 0 {
			return fmt.Errorf("still the old certificate")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("new sessions did not get the renewed certificate: %v", err)
	}
	report("certificate renewed -> served to new sessions", time.Since(renewed))
}

// discovery is step 7: without a DiscoveryPolicy an unknown recipient is refused and
// nobody is asked; with one, the relay asks the domain's server, accepts what it knows,
// refuses what it does not, delivers, and the address shows in the policy's status.
func discovery(t testing.TB, ns, domain string, report func(string, time.Duration)) {
	ctx := t.Context()
	newcomer, nobody := "newcomer@"+domain, "nobody@"+domain
	if code := rcptOnPort25(t, newcomer); code != 550 {
		t.Fatalf("RCPT TO:<%s> without a DiscoveryPolicy: got %d, want 550", newcomer, code)
	}
	if n := env.Sink.RcptCount(newcomer); n != 0 {
		t.Fatalf("the domain's server was asked about %s %d times without a DiscoveryPolicy", newcomer, n)
	}

	applied := time.Now()
	kubectl(t, fmt.Sprintf(`apiVersion: relay.postwarden.dev/v1alpha1
kind: DiscoveryPolicy
metadata: {name: shop-discovery, namespace: %s}
spec:
  mailDomainRefs: [{name: shop-test}]
`, ns), "apply", "--server-side", "-f", "-")
	err := dev.Poll(ctx, enforceWithin, func() error {
		if code := rcptOnPort25(t, newcomer); code != 250 {
			return fmt.Errorf("RCPT TO:<%s> got %d", newcomer, code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the DiscoveryPolicy was not enforced within %v: %v", enforceWithin, err)
	}
	report("DiscoveryPolicy -> unknown recipient accepted by callout", time.Since(applied))
	if n := env.Sink.RcptCount(newcomer); n != 1 {
		t.Errorf("the domain's server was asked about %s %d times, want 1 callout", newcomer, n)
	}

	// The domain's server refuses nobody@; the second question is answered from the cache.
	for range 2 {
		if code := rcptOnPort25(t, nobody); code != 550 {
			t.Errorf("RCPT TO:<%s>, which the domain's server refuses: got %d, want 550", nobody, code)
		}
	}
	if n := env.Sink.RcptCount(nobody); n != 1 {
		t.Errorf("the domain's server was asked about %s %d times, want 1 callout and a cache hit", nobody, n)
	}

	// The message itself: accepted, delivered to the domain's server, counted as clean.
	msgID := fmt.Sprintf("e2e-discovered-%s", ns)
	c, err := smtp.Dial(env.Info.Inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("sender@elsewhere.example", []string{newcomer}, strings.NewReader(dev.NewMessage("sender@elsewhere.example", newcomer, "hello", msgID))); err != nil {
		t.Fatalf("sending to %s on port 25: %v", newcomer, err)
	}
	_ = c.Quit()
	sent := time.Now()
	waitMessage(t, env.Sink, msgID)

	err = dev.Poll(ctx, 30*time.Second, func() error {
		var p relayv1alpha1.DiscoveryPolicy
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shop-discovery"}, &p); err != nil {
			return err
		}
		for _, a := range p.Status.RecentAddresses {
			if a.Address == newcomer && a.State == "Pending" && p.Status.Discovered.Pending >= 1 {
				return nil
			}
		}
		return fmt.Errorf("%s is not a Pending address in the status yet: %+v", newcomer, p.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	report("delivery -> discovered address in the policy's status", time.Since(sent))
	out := kubectl(t, "", "get", "configmap", "-n", ns, "-l", "relay.postwarden.dev/discovery-state=shop-discovery",
		"-o", `jsonpath={range .items[*]}{.data.addresses\.jsonl}{end}`)
	if !strings.Contains(out, `"address":"`+newcomer+`"`) {
		t.Errorf("kubectl shows no %s in the policy's state ConfigMaps:\n%s", newcomer, out)
	}
}

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
		if m := waitMessage(t, mxGood, "e2e-swaks"); !m.TLS {
			t.Errorf("swaks' mail reached the MX without TLS")
		}
	})
}

func report(what string, d time.Duration) {
	fmt.Printf("e2e: %-58s %8.1f ms\n", what, float64(d.Microseconds())/1000)
}

func waitPolicyReady(t testing.TB, ns, name string) {
	t.Helper()
	err := dev.Poll(t.Context(), time.Minute, func() error {
		var p relayv1alpha1.TLSDeliveryPolicy
		if err := env.Client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, "Ready")
		if c == nil || c.Status != "True" || c.ObservedGeneration != p.Generation {
			return fmt.Errorf("not ready at generation %d: %+v", p.Generation, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TLSDeliveryPolicy %s: %v", name, err)
	}
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

func waitMessage(t testing.TB, s *dev.Sink, id string) dev.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := s.Wait(ctx, func(m dev.Message) bool { return bytes.Contains(m.Data, []byte("<"+id+"@dev.postwarden>")) })
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return m
}

// metric sums the relay's samples of a metric whose name ends in suffix and whose
// labels include every one of labels.
func metric(t testing.TB, suffix string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + env.Relay.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
lines:
	for line := range strings.Lines(string(body)) {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasSuffix(name, suffix) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				continue lines
			}
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
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

// metricUnit turns "a -> b (c, d)" into "a-b-c-d".
func metricUnit(what string) string {
	return strings.Join(strings.FieldsFunc(what, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.')
	}), "-")
}

func indent(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimSpace(s)) {
		b.WriteString(prefix + line)
	}
	return b.String()
}
