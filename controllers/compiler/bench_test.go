package compiler

import (
	"fmt"
	"testing"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// largeInput is 5,000 MailDomains in 500 namespaces, each with 20 users, and 100,000
// SMTPCredentials, 20 per domain.
func largeInput() Input {
	const domains, perDomain = 5000, 20
	in := Input{RelayHostnames: []string{"relay.example"}, CertificateSecret: "relay-tls"}
	for d := range domains {
		ns := fmt.Sprintf("tenant-%d", d/10)
		dom := fmt.Sprintf("d%d.example", d)
		md := domain(ns, fmt.Sprintf("md-%d", d), dom, d)
		for u := range perDomain {
			md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: fmt.Sprintf("user%d@%s", u, dom)})
		}
		in.MailDomains = append(in.MailDomains, md)
		for c := range perDomain {
			in.Credentials = append(in.Credentials, credential(ns, fmt.Sprintf("cred-%d-%d", d, c), md.Name,
				fmt.Sprintf("app%d-%06d@%s", c, d, dom), domains+d*perDomain+c, fmt.Sprintf("user%d@%s", c, dom)))
		}
	}
	return in
}

func BenchmarkCompile100kCredentials(b *testing.B) {
	in := largeInput()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := Compile(in)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(res.Snapshot.Credentials); n != 100_000 {
			b.Fatalf("%d credentials compiled, want 100000", n)
		}
	}
}

func BenchmarkEncode100kCredentials(b *testing.B) {
	res, err := Compile(largeInput())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var shards []snapshot.Shard
	for b.Loop() {
		if shards, err = snapshot.Encode(res.Snapshot, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(shards)), "shards")
}
