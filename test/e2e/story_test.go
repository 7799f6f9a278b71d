package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	_, sinkPort, _ := strings.Cut(env.Sink.Addr, ":")
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
	if got.TLS == nil {
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
	if m := waitMessage(t, mxBad, id("wrong-before")); m.TLS == nil {
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
