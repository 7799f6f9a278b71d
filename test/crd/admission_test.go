package crd

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// A valid object of each kind; each case below breaks one thing in one of them.
const (
	validDomain = `
apiVersion: relay.postwarden.dev/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  users: [{address: jane.doe@example.com}]
  aliases: [{address: jane@example.com, target: jane.doe@example.com}]
  sendingServers: [{cidr: 203.0.113.0/28}]
  inboundDelivery: {host: mail.corp.example.com, auth: {secretRef: {name: corp-login}}}
  outboundRoute: {host: smtp.provider.example, auth: {secretRef: {name: provider-login}}}
  deliveryEvents: {url: "https://hooks.example.com/mail", secretRef: {name: events-key}, events: [bounced]}
  dkim: {selectors: [{name: pw2026a}, {name: ed2026a, keyType: Ed25519}]}
  sendingLimits: {messagesPerWindow: 200, window: 10m, recipientsPerMessage: 50}
`
	validCredential = `
apiVersion: relay.postwarden.dev/v1alpha1
kind: SMTPCredential
metadata: {name: billing}
spec:
  mailDomainRef: {name: example-com}
  label: billing app
  limits: {messagesPerWindow: 100, window: 1h, messagesPerDay: -1}
`
	validDiscovery = `
apiVersion: relay.postwarden.dev/v1alpha1
kind: DiscoveryPolicy
metadata: {name: discovery}
spec:
  mailDomainRefs: [{name: example-com}]
`
	validTLS = `
apiVersion: relay.postwarden.dev/v1alpha1
kind: TLSDeliveryPolicy
metadata: {name: tls}
spec:
  destinations: [example.net]
  mode: RequireTLS
`
)

// edit parses a YAML manifest and applies a change to it.
func edit(t *testing.T, manifest string, change func(obj map[string]any)) *unstructured.Unstructured {
	t.Helper()
	obj := map[string]any{}
	if err := yaml.Unmarshal([]byte(manifest), &obj); err != nil {
		t.Fatalf("parsing manifest: %v", err)
	}
	change(obj)
	return &unstructured.Unstructured{Object: obj}
}

// set returns a change that sets spec.<path> to value.
func set(value any, path ...string) func(map[string]any) {
	return func(obj map[string]any) {
		if err := unstructured.SetNestedField(obj, value, append([]string{"spec"}, path...)...); err != nil {
			panic(err)
		}
	}
}

// unset returns a change that removes spec.<path>.
func unset(path ...string) func(map[string]any) {
	return func(obj map[string]any) { unstructured.RemoveNestedField(obj, append([]string{"spec"}, path...)...) }
}

func list(items ...any) []any { return items }

func TestInvalidObjectsAreRejectedWithAClearMessage(t *testing.T) {
	ns := newNamespace(t)
	cases := map[string]struct {
		manifest string
		change   func(map[string]any)
		// want is the field path and message the API server must report.
		want string
	}{
		"a domain in upper case is refused": {
			validDomain, set("Example.com", "domain"),
			"spec.domain: Invalid value: \"Example.com\": domain must be a lower-case DNS name with at least one dot, such as example.com",
		},
		"a single-label domain is refused": {
			validDomain, set("localhost", "domain"),
			"domain must be a lower-case DNS name with at least one dot",
		},
		"a domain label starting with a hyphen is refused": {
			validDomain, set("-bad.example.com", "domain"),
			"domain must be a lower-case DNS name",
		},
		"a user address without a domain is refused": {
			validDomain, set(list(map[string]any{"address": "jane"}), "users"),
			"spec.users[0].address: Invalid value: \"jane\": address must be a lower-case email address such as jane.doe@example.com",
		},
		"the percent hack in a user address is refused": {
			validDomain, set(list(map[string]any{"address": "jane%evil.example.org@example.com"}), "users"),
			"spec.users[0].address: Invalid value: \"jane%evil.example.org@example.com\": address must be a lower-case email address",
		},
		"a bang path in a user address is refused": {
			validDomain, set(list(map[string]any{"address": "other!jane@example.com"}), "users"),
			"spec.users[0].address: Invalid value: \"other!jane@example.com\": address must be a lower-case email address such as jane.doe@example.com (no quotes, '%', '!' or source routes)",
		},
		"a quoted local part is refused": {
			validDomain, set(list(map[string]any{"address": `"jane doe"@example.com`}), "users"),
			"spec.users[0].address: Invalid value: \"\\\"jane doe\\\"@example.com\": address must be a lower-case email address",
		},
		"a user of another domain is refused": {
			validDomain, set(list(map[string]any{"address": "jane@example.org"}), "users"),
			"every users[].address must be an address in spec.domain",
		},
		"the same user twice is refused": {
			validDomain, set(list(map[string]any{"address": "a@example.com"}, map[string]any{"address": "a@example.com"}), "users"),
			"spec.users[1]: Duplicate value",
		},
		"an unknown role is refused": {
			validDomain, set(list(map[string]any{"address": "a@example.com", "role": "Admin"}), "users"),
			"spec.users[0].role: Unsupported value: \"Admin\": supported values: \"EndUser\", \"SilentUser\"",
		},
		"an alias that points to itself is refused": {
			validDomain, set(list(map[string]any{"address": "jane@example.com", "target": "jane@example.com"}), "aliases"),
			"spec.aliases[0]: Invalid value: an alias cannot point to itself: address and target must differ",
		},
		"an alias outside the domain is refused": {
			validDomain, set(list(map[string]any{"address": "jane@example.org", "target": "jane.doe@example.com"}), "aliases"),
			"every aliases[].address must be an address in spec.domain",
		},
		"an invalid address of another domain is refused": {
			validDomain, set(list("old@example.org"), "invalidAddresses"),
			"every invalidAddresses entry must be an address in spec.domain",
		},
		"a malformed CIDR is refused": {
			validDomain, set(list(map[string]any{"cidr": "203.0.113.300/32"}), "sendingServers"),
			"spec.sendingServers[0].cidr: Invalid value: \"203.0.113.300/32\": cidr must be a network in CIDR notation, such as 203.0.113.0/28 or 2001:db8::/64",
		},
		"an address without a prefix length is refused": {
			validDomain, set(list(map[string]any{"cidr": "203.0.113.10"}), "sendingServers"),
			"cidr must be a network in CIDR notation",
		},
		"the whole IPv4 internet as a sending server is refused": {
			validDomain, set(list(map[string]any{"cidr": "0.0.0.0/0"}), "sendingServers"),
			"spec.sendingServers[0].cidr: Invalid value: \"0.0.0.0/0\": cidr is too wide: more than a /8 (IPv4) or /32 (IPv6) would make the relay an open relay",
		},
		"a very wide IPv6 sending server is refused": {
			validDomain, set(list(map[string]any{"cidr": "2001:db8::/16"}), "sendingServers"),
			"cidr is too wide",
		},
		"a port above 65535 is refused": {
			validDomain, set(int64(70000), "inboundDelivery", "port"),
			"spec.inboundDelivery.port: Invalid value: 70000: spec.inboundDelivery.port in body should be less than or equal to 65535",
		},
		"port zero is refused": {
			validDomain, set(int64(0), "inboundDelivery", "port"),
			"spec.inboundDelivery.port in body should be greater than or equal to 1",
		},
		"an inbound host with a space is refused": {
			validDomain, set("mail server", "inboundDelivery", "host"),
			"spec.inboundDelivery.host: Invalid value: \"mail server\": host must be a lower-case DNS name or an IP address",
		},
		"delivery events to a plain http URL are refused": {
			validDomain, set(map[string]any{"url": "http://hooks.example.com/mail", "secretRef": map[string]any{"name": "key"}}, "deliveryEvents"),
			"spec.deliveryEvents.url: Invalid value: \"http://hooks.example.com/mail\": url must be an https:// URL",
		},
		"an unknown delivery event type is refused": {
			validDomain, set(map[string]any{"url": "https://hooks.example.com/mail", "secretRef": map[string]any{"name": "key"},
				"events": list("delivered", "opened")}, "deliveryEvents"),
			"spec.deliveryEvents.events[1]: Unsupported value: \"opened\"",
		},
		"an outbound route with a space in its host is refused": {
			validDomain, set(map[string]any{"host": "smtp provider"}, "outboundRoute"),
			"host must be a lower-case DNS name or an IP address",
		},
		"a route secret name with capitals is refused": {
			validDomain, set(map[string]any{"host": "smtp.provider.example", "auth": map[string]any{"secretRef": map[string]any{"name": "Provider"}}}, "outboundRoute"),
			"name must be a Secret name",
		},
		"a DKIM selector with an underscore is refused": {
			validDomain, set(map[string]any{"selectors": []any{map[string]any{"name": "pw_1"}}}, "dkim"),
			"name must be a DKIM selector",
		},
		"an unknown DKIM key type is refused": {
			validDomain, set(map[string]any{"selectors": []any{map[string]any{"name": "pw1", "keyType": "RSA1024"}}}, "dkim"),
			"spec.dkim.selectors[0].keyType: Unsupported value: \"RSA1024\"",
		},
		"DKIM without a selector is refused": {
			validDomain, set(map[string]any{"selectors": []any{}}, "dkim"),
			"spec.dkim.selectors: Invalid value: 0: spec.dkim.selectors in body should have at least 1 items",
		},
		"a sending limit window under a minute is refused": {
			validCredential, set(map[string]any{"window": "30s"}, "limits"),
			"window must be between 1m and 24h",
		},
		"a sending limit below -1 is refused": {
			validCredential, set(map[string]any{"messagesPerDay": int64(-2)}, "limits"),
			"spec.limits.messagesPerDay in body should be greater than or equal to -1",
		},
		"a credential without a label is refused": {
			validCredential, set("", "label"),
			"spec.label in body should be at least 1 chars long",
		},
		"a credential label with a newline is refused": {
			validCredential, set("billing\napp", "label"),
			"label may hold letters, digits, spaces, '.', '_' and '-', and must start with a letter or digit",
		},
		"a credential without a domain is refused": {
			validCredential, unset("mailDomainRef"),
			"spec.mailDomainRef: Required value",
		},
		"a credential sender that is not an address is refused": {
			validCredential, set(list("billing"), "allowedSenders"),
			"allowedSenders must be lower-case email addresses such as noreply@example.com",
		},
		"a credential Secret name that Kubernetes cannot store is refused": {
			validCredential, set("Billing_Secret", "secretName"),
			"secretName must be a valid Secret name",
		},
		"a discovery threshold below 1 is refused": {
			validDiscovery, set(int64(0), "detectionThreshold"),
			"spec.detectionThreshold: Invalid value: 0: spec.detectionThreshold in body should be greater than or equal to 1",
		},
		"a discovery window above a year is refused": {
			validDiscovery, set(int64(400), "detectionWindowDays"),
			"spec.detectionWindowDays in body should be less than or equal to 365",
		},
		"a discovery policy name longer than a label value is refused": {
			validDiscovery, func(obj map[string]any) { obj["metadata"].(map[string]any)["name"] = strings.Repeat("d", 64) },
			"a DiscoveryPolicy name has at most 63 characters: it labels the ConfigMaps that hold the policy's discovery state",
		},
		"a discovery policy covering no domain is refused": {
			validDiscovery, set(list(), "mailDomainRefs"),
			"spec.mailDomainRefs: Required value",
		},
		"a report time that is not a time of day is refused": {
			validDiscovery, func(obj map[string]any) {
				set(list("postmaster@example.com"), "reportRecipients")(obj)
				set("25:00", "reportSchedule", "timeOfDay")(obj)
			},
			"timeOfDay must be HH:MM in 24-hour form, such as 08:00",
		},
		"a report schedule without recipients is refused": {
			validDiscovery, set("Friday", "reportSchedule", "dayOfWeek"),
			"reportSchedule needs at least one reportRecipients address",
		},
		"a destination longer than a domain name can be is refused": {
			validTLS, set(list(strings.Repeat("a", 62)+"."+strings.Repeat("b", 62)+"."+strings.Repeat("c", 62)+"."+strings.Repeat("d", 58)+".example"), "destinations"),
			"destinations must be at most 253 characters, not counting a leading *.",
		},
		"an outbound TLS policy without destinations is refused": {
			validTLS, unset("destinations"),
			"an Outbound policy needs at least one destination; use \"*\" for every destination",
		},
		"a destination wildcard in the middle is refused": {
			validTLS, set(list("mail.*.example.net"), "destinations"),
			"destinations must be a lower-case domain such as example.org, a wildcard such as *.example.org, or * for every domain",
		},
		"an unknown TLS mode is refused": {
			validTLS, set("Strict", "mode"),
			"spec.mode: Unsupported value: \"Strict\": supported values: \"Opportunistic\", \"RequireTLS\", \"RequireVerifiedTLS\"",
		},
		"an unknown TLS version is refused": {
			validTLS, set("1.4", "minTLSVersion"),
			"spec.minTLSVersion: Unsupported value: \"1.4\"",
		},
		"a CA bundle without certificate verification is refused": {
			validTLS, set(map[string]any{"name": "bank-ca"}, "caBundleSecretRef"),
			"caBundleSecretRef is only used with mode RequireVerifiedTLS",
		},
		"an inbound TLS policy with destinations is refused": {
			validTLS, func(obj map[string]any) {
				set("Inbound", "direction")(obj)
				set(list(map[string]any{"name": "example-com"}), "mailDomainRefs")(obj)
			},
			"an Inbound policy applies to the MailDomains' own servers; leave destinations empty",
		},
		"an inbound TLS policy without domains is refused": {
			validTLS, func(obj map[string]any) {
				set("Inbound", "direction")(obj)
				unset("destinations")(obj)
			},
			"an Inbound policy needs mailDomainRefs: the domains whose own servers it applies to",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := edit(t, tc.manifest, tc.change)
			obj.SetNamespace(ns)
			err := env.Client.Create(context.Background(), obj)
			if err == nil {
				t.Fatalf("the API server accepted the object; want rejection with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejection message\n  got:  %v\n  want: ...%s...", err, tc.want)
			}
		})
	}
}

func TestValidBaseObjectsAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	for _, manifest := range []string{validDomain, validCredential, validDiscovery, validTLS} {
		obj := edit(t, manifest, func(map[string]any) {})
		obj.SetNamespace(ns)
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Errorf("creating %s: %v", obj.GetKind(), err)
		}
	}
}

func TestDomainIsImmutable(t *testing.T) {
	ns := newNamespace(t)
	obj := edit(t, validDomain, func(map[string]any) {})
	obj.SetNamespace(ns)
	ctx := context.Background()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	set("example.org", "domain")(obj.Object)
	err := env.Client.Update(ctx, obj)
	want := "domain is immutable; create a new MailDomain for another domain"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("changing spec.domain: got %v, want %q", err, want)
	}
}

func TestDKIMKeyTypeOfASelectorIsImmutable(t *testing.T) {
	ns := newNamespace(t)
	obj := edit(t, validDomain, func(map[string]any) {})
	obj.SetNamespace(ns)
	ctx := context.Background()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	set(map[string]any{"selectors": []any{map[string]any{"name": "pw2026a", "keyType": "Ed25519"}}}, "dkim")(obj.Object)
	err := env.Client.Update(ctx, obj)
	want := "the keyType of a selector cannot change: add a selector with a new name for a key of another type"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("changing a selector's keyType: got %v, want %q", err, want)
	}
	// A new selector in front, as in a rotation, is fine.
	set(map[string]any{"selectors": []any{map[string]any{"name": "pw2027a"}, map[string]any{"name": "pw2026a"}}}, "dkim")(obj.Object)
	if err := env.Client.Update(ctx, obj); err != nil {
		t.Fatalf("adding a selector: %v", err)
	}
}
