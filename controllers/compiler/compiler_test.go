package compiler

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// scenarios are the inputs whose snapshots are kept as golden files.
func scenarios(t testing.TB) map[string]Input {
	ca := testCAPEM(t)
	return map[string]Input{
		"full": {
			MailDomains: []*relayv1alpha1.MailDomain{
				domain("acme", "acme-com", "acme.com", 0,
					users("jane.doe@acme.com", "bob@acme.com"), functional("billing@acme.com"),
					alias("j.doe@acme.com", "jane.doe@acme.com"), alias("sales@acme.com", "bob@acme.net"),
					invalid("old.user@acme.com"), sendingServer("203.0.113.0/28"), sendingServer("2001:db8:10::/64"),
					inbound("mail.corp.acme.com", 25), submission("smtp.acme.com")),
				domain("acme", "acme-net", "acme.net", 1, users("bob@acme.net"), inbound("10.0.0.5", 2525)),
				func() *relayv1alpha1.MailDomain {
					md := domain("beta", "beta", "beta.org", 2, users("ann@beta.org"))
					md.Spec.RequireSMTPAuth = true
					return md
				}(),
			},
			Credentials: []Credential{
				credential("acme", "billing-app", "acme-com", "billing-app-k3x9q2@acme.com", 3, "billing@acme.com"),
				credential("acme", "scanner", "acme-com", "scanner-7m2p4z@acme.com", 4),
				credential("beta", "crm", "beta", "crm-a1b2c3@beta.org", 5),
			},
			DiscoveryPolicies: []*relayv1alpha1.DiscoveryPolicy{
				func() *relayv1alpha1.DiscoveryPolicy {
					p := discovery("acme", "learn", 6, "acme-com", "acme-net")
					p.Spec.AutoAddAliases = true
					p.Spec.ReportRecipients = []string{"postmaster@acme.com"}
					return p
				}(),
			},
			TLSPolicies: []*relayv1alpha1.TLSDeliveryPolicy{
				tlsPolicy("acme", "everywhere", 7, to("*")),
				tlsPolicy("acme", "partner", 8, to("partner.example", "*.partner.example"), verified("partner-ca")),
				tlsPolicy("acme", "own-server", 9, inboundTLS(), forDomains("acme-com")),
			},
			CABundles:         map[SecretKeyRef]string{{Namespace: "acme", Name: "partner-ca", Key: "ca.crt"}: ca},
			RelayHostnames:    []string{"relay.postwarden.example"},
			CertificateSecret: "postwarden-relay-tls",
		},
		"excluded objects leave the rest intact": {
			MailDomains: []*relayv1alpha1.MailDomain{
				domain("first", "shop", "shop.example", 0, users("a@shop.example")),
				domain("second", "shop", "shop.example", 1, users("evil@shop.example"), submission("smtp.shop.example")),
				domain("first", "broken", "broken.example", 2, users("x@broken.example"), invalid("x@broken.example")),
				domain("first", "dangling", "dangling.example", 3, alias("a@dangling.example", "nobody@shop.example")),
			},
			Credentials: []Credential{
				credential("first", "ok", "shop", "ok-aaaaaa@shop.example", 4),
				credential("first", "same-name", "shop", "ok-aaaaaa@shop.example", 5),
				credential("second", "hijack", "shop", "hijack-bbbbbb@shop.example", 6),
				credential("first", "foreign-sender", "shop", "fs-cccccc@shop.example", 7, "someone@else.example"),
				{Object: credential("first", "pending", "shop", "", 8).Object},
			},
			DiscoveryPolicies: []*relayv1alpha1.DiscoveryPolicy{
				discovery("first", "older", 9, "shop"),
				discovery("first", "younger", 10, "shop"),
				discovery("first", "missing", 11, "nope"),
			},
			TLSPolicies: []*relayv1alpha1.TLSDeliveryPolicy{
				tlsPolicy("first", "a", 12, to("gmail.com")),
				tlsPolicy("first", "b", 13, to("gmail.com", "yahoo.com")),
				tlsPolicy("first", "no-ca", 14, to("bank.example"), verified("absent")),
				tlsPolicy("second", "nothing-to-govern", 15, to("*")),
			},
		},
		"discovered addresses and the report credential": {
			MailDomains: []*relayv1alpha1.MailDomain{
				domain("acme", "acme-com", "acme.com", 0, users("jane.doe@acme.com"), inbound("mail.acme.com", 25)),
				domain("acme", "acme-net", "acme.net", 1, users("bob@acme.net"), inbound("mail.acme.com", 25)),
			},
			DiscoveryPolicies: []*relayv1alpha1.DiscoveryPolicy{discovery("acme", "learn", 2, "acme-com", "acme-net")},
			Discovery: map[string]state.State{"acme/learn": {
				Version: state.StateVersion, Policy: "acme/learn",
				Addresses: []state.Address{
					{Address: "new.user@acme.com", State: snapshot.DiscoveredUser, Role: "EndUser", Reason: state.ReasonThreshold},
					{Address: "jane.doe@acme.net", State: snapshot.DiscoveredAlias, Target: "jane.doe@acme.com", Reason: state.ReasonLocalPart},
					{Address: "maybe@acme.net", State: snapshot.DiscoveredPending, Reason: state.ReasonVerified},
					{Address: "gone@acme.com", State: snapshot.DiscoveredInvalid, Reason: state.ReasonExpired},
					// The spec lists it: the spec wins.
					{Address: "bob@acme.net", State: snapshot.DiscoveredInvalid, Reason: state.ReasonExpired},
					// Not a covered domain, and not an address: left out, never an invalid snapshot.
					{Address: "x@elsewhere.example", State: snapshot.DiscoveredUser},
					{Address: "Bad Address@acme.com", State: snapshot.DiscoveredUser},
				},
			}},
			ReportCredential: &ReportCredential{Username: "postwarden-discovery-report",
				PasswordHash: "hmac-sha256$AAAAAAAAAAAAAAAAAAAAAA$" + strings.Repeat("A", 43),
				Source:       snapshot.ObjectRef{Namespace: "postwarden-system", Name: "postwarden-discovery-report"}},
		},
		"empty": {},
	}
}

func TestCompileMatchesGoldenFiles(t *testing.T) {
	for name, in := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			res := must(t, in)
			got, err := json.MarshalIndent(res.Snapshot, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", strings.ReplaceAll(name, " ", "-")+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("snapshot differs from %s (run go test -update after checking):\n%s", path, got)
			}
			loaded, err := snapshot.Unmarshal(want)
			if err != nil {
				t.Fatalf("the relay's parser refuses %s: %v", path, err)
			}
			if loaded.Hash != res.Snapshot.Hash {
				t.Errorf("golden file hashes to %s, compile gave %s", loaded.Hash, res.Snapshot.Hash)
			}
		})
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	for name, in := range scenarios(t) {
		t.Run(name, func(t *testing.T) {
			first := must(t, in)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				shuffled := in
				shuffled.MailDomains = slices.Clone(in.MailDomains)
				shuffled.Credentials = slices.Clone(in.Credentials)
				shuffled.TLSPolicies = slices.Clone(in.TLSPolicies)
				shuffled.DiscoveryPolicies = slices.Clone(in.DiscoveryPolicies)
				rng.Shuffle(len(shuffled.MailDomains), func(i, j int) {
					shuffled.MailDomains[i], shuffled.MailDomains[j] = shuffled.MailDomains[j], shuffled.MailDomains[i]
				})
				rng.Shuffle(len(shuffled.Credentials), func(i, j int) {
					shuffled.Credentials[i], shuffled.Credentials[j] = shuffled.Credentials[j], shuffled.Credentials[i]
				})
				rng.Shuffle(len(shuffled.TLSPolicies), func(i, j int) {
					shuffled.TLSPolicies[i], shuffled.TLSPolicies[j] = shuffled.TLSPolicies[j], shuffled.TLSPolicies[i]
				})
				again := must(t, shuffled)
				if again.Snapshot.Hash != first.Snapshot.Hash {
					t.Fatalf("input order changed the hash: %s then %s", first.Snapshot.Hash, again.Snapshot.Hash)
				}
				for k, v := range first.Verdicts {
					w := again.Verdicts[k]
					if w.Accepted != v.Accepted || w.Reason != v.Reason || w.Message != v.Message || w.Fingerprint != v.Fingerprint {
						t.Fatalf("input order changed the verdict on %s: %+v then %+v", k, v, w)
					}
				}
			}
		})
	}
}

func TestVerdicts(t *testing.T) {
	res := must(t, scenarios(t)["excluded objects leave the rest intact"])
	type want struct {
		kind     Kind
		ns, name string
		accepted bool
		reason   string
		contains string
	}
	cases := map[string]want{
		"the oldest claim on a domain wins":                     {KindMailDomain, "first", "shop", true, relayv1alpha1.ReasonCompiled, "shop.example"},
		"a younger claim from another namespace is refused":     {KindMailDomain, "second", "shop", false, relayv1alpha1.ReasonDomainConflict, "claimed by another namespace"},
		"an address both user and invalid is refused":           {KindMailDomain, "first", "broken", false, relayv1alpha1.ReasonInvalidSpec, "x@broken.example"},
		"an alias to an unknown address is refused":             {KindMailDomain, "first", "dangling", false, relayv1alpha1.ReasonInvalidReference, "nobody@shop.example"},
		"a credential of an accepted domain is in":              {KindSMTPCredential, "first", "ok", true, relayv1alpha1.ReasonCompiled, "ok-aaaaaa@shop.example"},
		"a username used twice stays with the older credential": {KindSMTPCredential, "first", "same-name", false, relayv1alpha1.ReasonInvalidSpec, "first/ok"},
		"a credential of a conflicting domain is refused":       {KindSMTPCredential, "second", "hijack", false, relayv1alpha1.ReasonInvalidReference, "shop"},
		"a sender outside the namespace's domains is refused":   {KindSMTPCredential, "first", "foreign-sender", false, relayv1alpha1.ReasonInvalidReference, "someone@else.example"},
		"a credential without its Secret waits":                 {KindSMTPCredential, "first", "pending", false, relayv1alpha1.ReasonSecretPending, "Secret"},
		"the older discovery policy wins":                       {KindDiscoveryPolicy, "first", "older", true, relayv1alpha1.ReasonCompiled, "shop.example"},
		"the younger discovery policy reports the conflict":     {KindDiscoveryPolicy, "first", "younger", false, relayv1alpha1.ReasonPolicyConflict, "older"},
		"a discovery policy of a missing domain is refused":     {KindDiscoveryPolicy, "first", "missing", false, relayv1alpha1.ReasonInvalidReference, "nope"},
		"the older TLS policy wins":                             {KindTLSDeliveryPolicy, "first", "a", true, relayv1alpha1.ReasonCompiled, "shop.example"},
		"an overlapping TLS policy reports the conflict":        {KindTLSDeliveryPolicy, "first", "b", false, relayv1alpha1.ReasonPolicyConflict, "gmail.com for shop.example (TLSDeliveryPolicy a"},
		"a TLS policy with a missing CA Secret is refused":      {KindTLSDeliveryPolicy, "first", "no-ca", false, relayv1alpha1.ReasonInvalidReference, "absent"},
		"an Outbound policy needs a domain in its namespace":    {KindTLSDeliveryPolicy, "second", "nothing-to-govern", false, relayv1alpha1.ReasonInvalidReference, "second"},
	}
	for name, w := range cases {
		t.Run(name, func(t *testing.T) {
			v := verdictOf(t, res, w.kind, w.ns, w.name)
			if v.Accepted != w.accepted || v.Reason != w.reason || !strings.Contains(v.Message, w.contains) {
				t.Errorf("got accepted=%v reason=%s message=%q; want accepted=%v reason=%s message containing %q",
					v.Accepted, v.Reason, v.Message, w.accepted, w.reason, w.contains)
			}
		})
	}
	if got := res.Snapshot.Domains; len(got) != 1 || got[0].Source.Namespace != "first" {
		t.Errorf("want only first/shop in the snapshot, got %+v", got)
	}
	if slices.Contains(res.Hostnames, "smtp.shop.example") {
		t.Errorf("a refused domain's submission hostname reached the certificate: %v", res.Hostnames)
	}
}

func TestSummaries(t *testing.T) {
	res := must(t, scenarios(t)["full"])
	acme := verdictOf(t, res, KindMailDomain, "acme", "acme-com")
	if acme.Users != 5 || acme.Credentials != 2 {
		t.Errorf("acme.com counts: users %d credentials %d, want 5 and 2", acme.Users, acme.Credentials)
	}
	wantPolicies := []string{"DiscoveryPolicy/learn", "TLSDeliveryPolicy/everywhere", "TLSDeliveryPolicy/own-server", "TLSDeliveryPolicy/partner"}
	if !slices.Equal(acme.Policies, wantPolicies) {
		t.Errorf("acme.com policies %v, want %v", acme.Policies, wantPolicies)
	}
	every := verdictOf(t, res, KindTLSDeliveryPolicy, "acme", "everywhere")
	if !slices.Equal(every.MailDomains, []string{"acme.com", "acme.net"}) {
		t.Errorf("an Outbound policy without mailDomainRefs must govern every domain of its namespace, got %v", every.MailDomains)
	}
	wantHosts := []string{"relay.postwarden.example", "smtp.acme.com"}
	if !slices.Equal(res.Hostnames, wantHosts) {
		t.Errorf("hostnames %v, want %v", res.Hostnames, wantHosts)
	}
}

func TestFingerprintFollowsContent(t *testing.T) {
	in := scenarios(t)["full"]
	before := must(t, in)
	changed := in
	changed.MailDomains = slices.Clone(in.MailDomains)
	md := changed.MailDomains[1].DeepCopy()
	md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: "new@acme.net"})
	changed.MailDomains[1] = md
	after := must(t, changed)
	key := ObjectKey{KindMailDomain, "acme", "acme-net"}
	if before.Verdicts[key].Fingerprint == after.Verdicts[key].Fingerprint {
		t.Error("adding a user must change the domain's fingerprint")
	}
	other := ObjectKey{KindMailDomain, "beta", "beta"}
	if before.Verdicts[other].Fingerprint != after.Verdicts[other].Fingerprint {
		t.Error("a change in one domain must not change another's fingerprint")
	}
}

func TestDiscoveredAddressesLeaveDomainFingerprintsAlone(t *testing.T) {
	in := scenarios(t)["discovered addresses and the report credential"]
	with := must(t, in)
	in.Discovery = nil
	without := must(t, in)
	if with.Snapshot.Hash == without.Snapshot.Hash {
		t.Fatal("the discovered addresses did not change the snapshot")
	}
	for _, name := range []string{"acme-com", "acme-net"} {
		a, b := verdictOf(t, with, KindMailDomain, "acme", name), verdictOf(t, without, KindMailDomain, "acme", name)
		if a.Fingerprint != b.Fingerprint {
			t.Errorf("MailDomain %s: a discovery change changed its fingerprint, so its Ready would flap", name)
		}
	}
	in.ReportCredential.PasswordHash = "not a hash"
	if res := must(t, in); len(res.Snapshot.Credentials) != 0 {
		t.Errorf("a malformed report credential reached the snapshot: %+v", res.Snapshot.Credentials)
	}
}
