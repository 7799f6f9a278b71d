package crd

import (
	"context"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

func TestDefaultsAreApplied(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	create := func(manifest string, change func(map[string]any)) {
		t.Helper()
		obj := edit(t, manifest, change)
		obj.SetNamespace(ns)
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetKind(), err)
		}
	}
	create(validDomain, func(map[string]any) {})
	create(validDiscovery, set(list("postmaster@example.com"), "reportRecipients"))
	create(validDiscovery, func(obj map[string]any) {
		obj["metadata"] = map[string]any{"name": "with-schedule"}
		set(list("postmaster@example.com"), "reportRecipients")(obj)
		set(map[string]any{}, "reportSchedule")(obj)
	})
	create(validTLS, func(obj map[string]any) {
		unset("mode")(obj)
		set("RequireVerifiedTLS", "mode")(obj)
		set(map[string]any{"name": "bank-ca"}, "caBundleSecretRef")(obj)
	})
	create(validTLS, func(obj map[string]any) {
		obj["metadata"] = map[string]any{"name": "plain"}
		unset("mode")(obj)
	})

	get := func(name string, obj client.Object) {
		t.Helper()
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
	}
	var domain relayv1alpha1.MailDomain
	get("example-com", &domain)
	var discovery, scheduled relayv1alpha1.DiscoveryPolicy
	get("discovery", &discovery)
	get("with-schedule", &scheduled)
	var verified, plain relayv1alpha1.TLSDeliveryPolicy
	get("tls", &verified)
	get("plain", &plain)

	checks := map[string]struct{ got, want any }{
		"a user's role defaults to EndUser":                   {domain.Spec.Users[0].Role, relayv1alpha1.RoleEndUser},
		"the inbound port defaults to 25":                     {domain.Spec.InboundDelivery.Port, int32(25)},
		"SMTP AUTH is not required by default":                {domain.Spec.RequireSMTPAuth, false},
		"discovery is enabled by default":                     {discovery.Spec.Enabled != nil && *discovery.Spec.Enabled, true},
		"the detection threshold defaults to 3":               {discovery.Spec.DetectionThreshold, int32(3)},
		"the detection window defaults to 30 days":            {discovery.Spec.DetectionWindowDays, int32(30)},
		"expiry defaults to 3 weeks":                          {discovery.Spec.ExpiryDays, int32(21)},
		"the discovered users' role defaults to EndUser":      {discovery.Spec.DefaultRole, relayv1alpha1.RoleEndUser},
		"the report day defaults to Monday":                   {scheduled.Spec.ReportSchedule.DayOfWeek, "Monday"},
		"the report time defaults to 08:00":                   {scheduled.Spec.ReportSchedule.TimeOfDay, "08:00"},
		"the direction defaults to Outbound":                  {plain.Spec.Direction, relayv1alpha1.DirectionOutbound},
		"the mode defaults to Opportunistic":                  {plain.Spec.Mode, relayv1alpha1.TLSOpportunistic},
		"the minimum TLS version defaults to 1.2":             {plain.Spec.MinTLSVersion, relayv1alpha1.TLSVersion("1.2")},
		"the CA bundle key defaults to ca.crt":                {verified.Spec.CABundleSecretRef.Key, "ca.crt"},
		"an unset report schedule stays unset (no report)":    {discovery.Spec.ReportSchedule == nil, true},
		"an explicit mode is kept":                            {verified.Spec.Mode, relayv1alpha1.TLSRequireVerified},
		"an unset sending-server list stays empty, not open":  {len(domain.Spec.SendingServers), 1},
		"discovery does not auto-add anything unless told to": {discovery.Spec.AutoAddAliases || discovery.Spec.AutoAddOutboundUsers, false},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", name, c.got, c.want)
		}
	}
}
