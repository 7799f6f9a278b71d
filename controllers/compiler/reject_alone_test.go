package compiler

import (
	"strings"
	"testing"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// Objects that admission let through but the relay would refuse (objects admitted by an
// older CRD, or a gap between the CRD's rules and the relay's) are rejected one by one:
// the snapshot still compiles, with every other tenant's objects in it.
func TestObjectsTheRelayWouldRefuseAreRejectedAlone(t *testing.T) {
	long := strings.Repeat("a", 62) + "." + strings.Repeat("b", 62) + "." + strings.Repeat("c", 62) + "." + strings.Repeat("d", 58) + ".example" // 255 characters, valid labels
	if len(long) != 255 {
		t.Fatalf("the long destination has %d characters", len(long))
	}
	res := must(t, Input{
		MailDomains: []*relayv1alpha1.MailDomain{
			domain("good", "shop", "shop.example", 1, users("jane@shop.example")),
			domain("bad", "bang", "bang.example", 2, users("other!user@bang.example")),
		},
		TLSPolicies: []*relayv1alpha1.TLSDeliveryPolicy{
			tlsPolicy("good", "tls", 3, to("gmail.com")),
			tlsPolicy("good", "too-long", 4, to(long)),
		},
	})
	cases := map[string]struct {
		kind     Kind
		ns, name string
		accepted bool
		contains string
	}{
		"a domain of another tenant stays in":             {KindMailDomain, "good", "shop", true, "shop.example"},
		"a bang path is refused, the domain alone":        {KindMailDomain, "bad", "bang", false, "other!user@bang.example"},
		"a TLS policy of the same tenant stays in":        {KindTLSDeliveryPolicy, "good", "tls", true, "shop.example"},
		"a destination the relay cannot match is refused": {KindTLSDeliveryPolicy, "good", "too-long", false, "is not a domain"},
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			v := verdictOf(t, res, w.kind, w.ns, w.name)
			wantReason := relayv1alpha1.ReasonCompiled
			if !w.accepted {
				wantReason = relayv1alpha1.ReasonInvalidSpec
			}
			if v.Accepted != w.accepted || v.Reason != wantReason || !strings.Contains(v.Message, w.contains) {
				t.Errorf("got accepted=%v reason=%s message=%q; want accepted=%v reason=%s message containing %q",
					v.Accepted, v.Reason, v.Message, w.accepted, wantReason, w.contains)
			}
		})
	}
	if n := len(res.Snapshot.Domains); n != 1 {
		t.Errorf("the snapshot has %d domains, want shop.example alone", n)
	}
	if n := len(res.Snapshot.TLSPolicies); n != 1 {
		t.Errorf("the snapshot has %d TLS policies, want good/tls alone", n)
	}
}
