package compiler

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/testkit"
)

// epoch is the creation time of the first test object; age is added in minutes.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meta(ns, name string, ageMinutes int) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: ns, Name: name, Generation: 1,
		CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(ageMinutes) * time.Minute)),
	}
}

type domainOpt func(*relayv1alpha1.MailDomain)

func domain(ns, name, dom string, created int, opts ...domainOpt) *relayv1alpha1.MailDomain {
	md := &relayv1alpha1.MailDomain{ObjectMeta: meta(ns, name, created), Spec: relayv1alpha1.MailDomainSpec{Domain: dom}}
	for _, o := range opts {
		o(md)
	}
	return md
}

func users(addrs ...string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		for _, a := range addrs {
			md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: a})
		}
	}
}

func functional(addrs ...string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		for _, a := range addrs {
			md.Spec.FunctionalAccounts = append(md.Spec.FunctionalAccounts, relayv1alpha1.FunctionalAccount{Address: a})
		}
	}
}

func alias(addr, target string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.Aliases = append(md.Spec.Aliases, relayv1alpha1.MailAlias{Address: addr, Target: target})
	}
}

func invalid(addrs ...string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.InvalidAddresses = append(md.Spec.InvalidAddresses, addrs...)
	}
}

func sendingServer(cidr string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.SendingServers = append(md.Spec.SendingServers, relayv1alpha1.SendingServer{CIDR: cidr})
	}
}

func inbound(host string, port int32) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.InboundDelivery = &relayv1alpha1.InboundDelivery{Host: host, Port: port}
	}
}

func submission(hosts ...string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) { md.Spec.SubmissionHostnames = hosts }
}

// testHash is a fixed, valid password hash, so golden files stay stable.
var testHash = "hmac-sha256$" + strings.Repeat("A", 22) + "$" + strings.Repeat("B", 42) + "A"

func credential(ns, name, domainRef, username string, created int, senders ...string) Credential {
	return Credential{
		Object: &relayv1alpha1.SMTPCredential{ObjectMeta: meta(ns, name, created), Spec: relayv1alpha1.SMTPCredentialSpec{
			MailDomainRef: relayv1alpha1.MailDomainReference{Name: domainRef}, Label: name, AllowedSenders: senders,
		}},
		Username: username, PasswordHash: testHash,
	}
}

func refs(names ...string) []relayv1alpha1.MailDomainReference {
	var r []relayv1alpha1.MailDomainReference
	for _, n := range names {
		r = append(r, relayv1alpha1.MailDomainReference{Name: n})
	}
	return r
}

func discovery(ns, name string, created int, domains ...string) *relayv1alpha1.DiscoveryPolicy {
	return &relayv1alpha1.DiscoveryPolicy{ObjectMeta: meta(ns, name, created), Spec: relayv1alpha1.DiscoveryPolicySpec{
		MailDomainRefs: refs(domains...), DetectionThreshold: 3, DetectionWindowDays: 30, ExpiryDays: 21,
	}}
}

type tlsOpt func(*relayv1alpha1.TLSDeliveryPolicy)

func tlsPolicy(ns, name string, created int, opts ...tlsOpt) *relayv1alpha1.TLSDeliveryPolicy {
	p := &relayv1alpha1.TLSDeliveryPolicy{ObjectMeta: meta(ns, name, created), Spec: relayv1alpha1.TLSDeliveryPolicySpec{
		Direction: relayv1alpha1.DirectionOutbound, Mode: relayv1alpha1.TLSRequire, MinTLSVersion: "1.2",
	}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func to(dst ...string) tlsOpt {
	return func(p *relayv1alpha1.TLSDeliveryPolicy) { p.Spec.Destinations = dst }
}

func forDomains(names ...string) tlsOpt {
	return func(p *relayv1alpha1.TLSDeliveryPolicy) { p.Spec.MailDomainRefs = refs(names...) }
}

func inboundTLS() tlsOpt {
	return func(p *relayv1alpha1.TLSDeliveryPolicy) { p.Spec.Direction = relayv1alpha1.DirectionInbound }
}

func verified(secret string) tlsOpt {
	return func(p *relayv1alpha1.TLSDeliveryPolicy) {
		p.Spec.Mode = relayv1alpha1.TLSRequireVerified
		p.Spec.CABundleSecretRef = &relayv1alpha1.SecretKeySelector{Name: secret, Key: "ca.crt"}
	}
}

// testCAPEM is a CA certificate that is the same PEM on every run, so golden files stay
// stable.
func testCAPEM(t testing.TB) string {
	t.Helper()
	return testkit.NewCA(t, testkit.Reproducible(epoch)).PEM()
}

// must compiles in and fails the test on error.
func must(t testing.TB, in Input) *Result {
	t.Helper()
	res, err := Compile(in)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return res
}

func verdictOf(t testing.TB, res *Result, kind Kind, ns, name string) *Verdict {
	t.Helper()
	v := res.Verdicts[ObjectKey{kind, ns, name}]
	if v == nil {
		t.Fatalf("no verdict for %s %s/%s", kind, ns, name)
	}
	return v
}
