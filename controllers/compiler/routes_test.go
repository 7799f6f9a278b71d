package compiler

import (
	"slices"
	"strings"
	"testing"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func outboundRoute(host string, port int32, secret string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.OutboundRoute = &relayv1alpha1.SMTPRoute{Host: host, Port: port}
		if secret != "" {
			md.Spec.OutboundRoute.Auth = &relayv1alpha1.SMTPAuth{SecretRef: relayv1alpha1.LocalSecretReference{Name: secret}}
		}
	}
}

func deliveryEvents(url, secret string, events ...relayv1alpha1.DeliveryEventType) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.DeliveryEvents = &relayv1alpha1.DeliveryEvents{URL: url,
			SecretRef: relayv1alpha1.LocalSecretReference{Name: secret}, Events: events}
	}
}

func inboundAuth(host, secret string) domainOpt {
	return func(md *relayv1alpha1.MailDomain) {
		md.Spec.InboundDelivery = &relayv1alpha1.InboundDelivery{Host: host,
			Auth: &relayv1alpha1.SMTPAuth{SecretRef: relayv1alpha1.LocalSecretReference{Name: secret}}}
	}
}

// A hop that logs in names the operator's copy of its credentials, derived from the
// MailDomain, never the tenant's Secret or the password; a Secret that is missing or
// incomplete keeps the domain in the config and says why on its verdict.
func TestRoutesNameTheCopyOfTheirCredentials(t *testing.T) {
	res := must(t, Input{
		MailDomains: []*relayv1alpha1.MailDomain{
			domain("a", "shop", "shop.example", 1, outboundRoute("smtp.provider.example", 0, "provider"), inboundAuth("mail.shop.example", "own")),
			domain("b", "news", "news.example", 2, outboundRoute("smtp.provider.example", 2525, "missing")),
			domain("c", "plain", "plain.example", 3, outboundRoute("smtp.provider.example", 25, "")),
			domain("d", "hooks", "hooks.example", 4, deliveryEvents("https://hooks.example/mail", "hmac", "deferred", "bounced")),
		},
		SecretProblems: map[string]string{
			RouteSecretName("a", "shop", HopOutbound): "",
			RouteSecretName("a", "shop", HopInbound):  "needs the keys username and password",
		},
	})
	domains := map[string]snapshot.Domain{}
	for _, d := range res.Snapshot.Domains {
		domains[d.Name] = d
	}

	shop := domains["shop.example"]
	want := snapshot.Endpoint{Host: "smtp.provider.example", Port: 587, AuthSecret: RouteSecretName("a", "shop", HopOutbound)}
	if shop.OutboundRoute == nil || *shop.OutboundRoute != want {
		t.Errorf("shop's outbound route is %+v, want %+v (port 587 by default)", shop.OutboundRoute, want)
	}
	if in := shop.InboundDelivery; in == nil || in.Port != 25 || in.AuthSecret != RouteSecretName("a", "shop", HopInbound) {
		t.Errorf("shop's inbound delivery is %+v", in)
	}
	v := verdictOf(t, res, KindMailDomain, "a", "shop")
	if !v.Accepted || !v.RelaySecrets || !strings.Contains(v.SecretProblem, "inboundDelivery.auth: Secret own needs the keys") ||
		strings.Contains(v.SecretProblem, "outboundRoute") {
		t.Errorf("shop: accepted=%v routeAuth=%v problem=%q", v.Accepted, v.RelaySecrets, v.SecretProblem)
	}

	v = verdictOf(t, res, KindMailDomain, "b", "news")
	if !v.Accepted || v.SecretProblem != "outboundRoute.auth: Secret missing does not exist" {
		t.Errorf("news: accepted=%v problem=%q", v.Accepted, v.SecretProblem)
	}
	if r := domains["news.example"].OutboundRoute; r == nil || r.Port != 2525 || r.AuthSecret == "" {
		t.Errorf("news keeps its route, waiting for the Secret: %+v", r)
	}

	v = verdictOf(t, res, KindMailDomain, "c", "plain")
	if v.RelaySecrets || v.SecretProblem != "" || domains["plain.example"].OutboundRoute.AuthSecret != "" {
		t.Errorf("a route without auth: routeAuth=%v problem=%q route=%+v", v.RelaySecrets, v.SecretProblem, domains["plain.example"].OutboundRoute)
	}

	// Delivery events name the copy of their key, and the types asked for, sorted.
	wantHook := snapshot.Webhook{URL: "https://hooks.example/mail", SecretName: RouteSecretName("d", "hooks", UseEvents),
		Events: []string{"bounced", "deferred"}}
	if h := domains["hooks.example"].DeliveryEvents; h == nil || h.URL != wantHook.URL || h.SecretName != wantHook.SecretName ||
		!slices.Equal(h.Events, wantHook.Events) {
		t.Errorf("hooks' delivery events are %+v, want %+v", h, wantHook)
	}
	v = verdictOf(t, res, KindMailDomain, "d", "hooks")
	if !v.Accepted || v.SecretProblem != "deliveryEvents.secretRef: Secret hmac does not exist" {
		t.Errorf("hooks: accepted=%v problem=%q", v.Accepted, v.SecretProblem)
	}
}

func TestRouteSecretNamesAreDistinctAndValid(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range [][3]string{{"a", "b-c", HopInbound}, {"a-b", "c", HopInbound}, {"a", "b-c", HopOutbound}, {strings.Repeat("n", 63), strings.Repeat("m", 253), HopOutbound}} {
		name := RouteSecretName(c[0], c[1], c[2])
		if seen[name] {
			t.Errorf("%v: %s is taken", c, name)
		}
		seen[name] = true
		d := snapshot.Domain{Name: "x.example", OutboundRoute: &snapshot.Endpoint{Host: "h.example", Port: 25, AuthSecret: name}}
		if err := d.Validate(); err != nil || len(name) > 63 {
			t.Errorf("%s: %v", name, err)
		}
	}
}
