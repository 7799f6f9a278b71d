package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// A MailDomain's smarthost login: the operator copies the username and password into a
// Secret of its own namespace that the relays read, names the copy in the snapshot,
// follows a password change, reports a missing Secret on the MailDomain, and deletes
// the copy when the route no longer logs in. The password appears nowhere else.
func TestRouteCredentialsAreCopiedForTheRelays(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "route")
	domain := ns + ".example"
	const password, rotated = "route-password-Xq7pL2", "route-password-rotated-Zk9w"
	tenantSecret := &corev1.Secret{ObjectMeta: objectMeta(ns, "provider"), Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "shop-user", "password": password}}
	create(t, tenantSecret)
	md := mailDomain(ns, "shop", domain, "sales@"+domain)
	md.Spec.OutboundRoute = &relayv1alpha1.SMTPRoute{Host: "smtp.provider.example",
		Auth: &relayv1alpha1.SMTPAuth{SecretRef: relayv1alpha1.LocalSecretReference{Name: "provider"}}}
	create(t, md)

	copyName := compiler.RouteSecretName(ns, "shop", compiler.HopOutbound)
	copyKey := client.ObjectKey{Namespace: operatorNS, Name: copyName}
	copyHas := func(want string) func() error {
		return func() error {
			var c corev1.Secret
			if err := k8s.Get(ctx, copyKey, &c); err != nil {
				return err
			}
			if c.Type != corev1.SecretTypeBasicAuth || c.Labels[snapshot.LabelRelaySecret] != "true" ||
				string(c.Data["username"]) != "shop-user" || string(c.Data["password"]) != want {
				return fmt.Errorf("copy %s: type %s, labels %v, %d keys", copyName, c.Type, c.Labels, len(c.Data))
			}
			return nil
		}
	}
	eventually(t, "the credentials are copied for the relays", copyHas(password))
	snapshotWhere(t, "the snapshot names the copy", func(s *snapshot.Snapshot) error {
		d := findDomain(s, domain)
		if d == nil || d.OutboundRoute == nil || *d.OutboundRoute != (snapshot.Endpoint{Host: "smtp.provider.example", Port: 587, AuthSecret: copyName}) {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	eventually(t, "the MailDomain says the route can log in", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady, "True/"+relayv1alpha1.ReasonSecretsCopied)
	})

	update(t, tenantSecret, func(s *corev1.Secret) { s.StringData = map[string]string{"password": rotated} })
	eventually(t, "a new password reaches the copy", copyHas(rotated))

	if found := leaks(t, []string{password, rotated}, client.ObjectKeyFromObject(tenantSecret), copyKey); len(found) > 0 {
		t.Errorf("the route password appears in %v", found)
	}

	// The route now names a Secret that does not exist: mail waits, the domain stays.
	update(t, md, func(m *relayv1alpha1.MailDomain) { m.Spec.OutboundRoute.Auth.SecretRef.Name = "nothing-here" })
	eventually(t, "the MailDomain reports the missing Secret", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		if err := wantCondition(md.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady, "False/"+relayv1alpha1.ReasonSecretMissing)
	})
	eventFor(t, md, relayv1alpha1.ReasonSecretMissing)
	eventually(t, "the copy of the Secret no longer named is deleted", func() error {
		err := k8s.Get(ctx, copyKey, &corev1.Secret{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("copy still there (%v)", err)
	})

	// Creating the named Secret is enough: the render follows it.
	create(t, &corev1.Secret{ObjectMeta: objectMeta(ns, "nothing-here"),
		StringData: map[string]string{"username": "shop-user", "password": password}})
	eventually(t, "the Secret created afterwards is copied", copyHas(password))
	eventually(t, "the MailDomain's route is ready again", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady, "True/"+relayv1alpha1.ReasonSecretsCopied)
	})

	update(t, md, func(m *relayv1alpha1.MailDomain) { m.Spec.OutboundRoute = nil })
	eventually(t, "a route without login leaves no copy and no condition", func() error {
		if err := k8s.Get(ctx, copyKey, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("copy still there (%v)", err)
		}
		if err := get(t, md); err != nil {
			return err
		}
		if c := condition(md.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady); c != "" {
			return fmt.Errorf("condition %s", c)
		}
		return nil
	})
}

// A relay that cannot log in on a MailDomain's route says so on its status Lease, and
// the operator tells the MailDomain's owner with a Warning Event, once.
func TestRelayLoginFailuresBecomeEvents(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "login")
	create(t, &corev1.Secret{ObjectMeta: objectMeta(ns, "provider"), Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "shop-user", "password": "login-password-7Hq2"}})
	md := mailDomain(ns, "shop", ns+".example", "sales@"+ns+".example")
	md.Spec.OutboundRoute = &relayv1alpha1.SMTPRoute{Host: "smtp.provider.example",
		Auth: &relayv1alpha1.SMTPAuth{SecretRef: relayv1alpha1.LocalSecretReference{Name: "provider"}}}
	create(t, md)
	copyName := compiler.RouteSecretName(ns, "shop", compiler.HopOutbound)
	eventually(t, "the route's credentials are copied", func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: copyName}, &corev1.Secret{})
	})

	failures, err := json.Marshal([]snapshot.LoginFailure{{
		AuthSecret: copyName, Host: "smtp.provider.example",
		Reason: "smtp.provider.example refused at AUTH: 535 5.7.8 authentication failed", At: time.Now().UTC()}})
	if err != nil {
		t.Fatal(err)
	}
	holder, seconds, now := "relay-login-"+ns, int32(60), metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: snapshot.LeasePrefix + holder,
			Labels:      map[string]string{snapshot.LabelRelayStatus: "true"},
			Annotations: map[string]string{snapshot.AnnotationHash: "unknown", snapshot.AnnotationLoginFailures: string(failures)}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, RenewTime: &now},
	}
	create(t, lease)
	t.Cleanup(func() { _ = k8s.Delete(ctx, lease) })
	eventFor(t, md, relayv1alpha1.ReasonRouteLoginFailed)
}

// The key of a MailDomain's delivery events is copied alone for the relays, and the
// snapshot names the copy beside the endpoint; a key too short to sign with is reported.
func TestDeliveryEventsKeyIsCopiedAlone(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "hooks")
	domain := ns + ".example"
	key := "hmac-key-0123456789abcdef"
	tenantSecret := &corev1.Secret{ObjectMeta: objectMeta(ns, "hook-key"),
		StringData: map[string]string{"secret": key, "other": "stays-with-the-tenant"}}
	create(t, tenantSecret)
	md := mailDomain(ns, "shop", domain, "sales@"+domain)
	md.Spec.DeliveryEvents = &relayv1alpha1.DeliveryEvents{URL: "https://hooks.example.com/mail",
		SecretRef: relayv1alpha1.LocalSecretReference{Name: "hook-key"}, Events: []relayv1alpha1.DeliveryEventType{"bounced"}}
	create(t, md)

	copyName := compiler.RouteSecretName(ns, "shop", compiler.UseEvents)
	eventually(t, "the key is copied, alone", func() error {
		var c corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: copyName}, &c); err != nil {
			return err
		}
		if len(c.Data) != 1 || string(c.Data["secret"]) != key || c.Labels[snapshot.LabelRelaySecret] != "true" {
			return fmt.Errorf("copy with %d keys, labels %v", len(c.Data), c.Labels)
		}
		return nil
	})
	snapshotWhere(t, "the snapshot names the endpoint and the copy", func(s *snapshot.Snapshot) error {
		d := findDomain(s, domain)
		if d == nil || d.DeliveryEvents == nil || d.DeliveryEvents.URL != "https://hooks.example.com/mail" ||
			d.DeliveryEvents.SecretName != copyName || len(d.DeliveryEvents.Events) != 1 || d.DeliveryEvents.Events[0] != "bounced" {
			return fmt.Errorf("domain entry %+v", d)
		}
		return nil
	})
	if found := leaks(t, []string{key}, client.ObjectKeyFromObject(tenantSecret), client.ObjectKey{Namespace: operatorNS, Name: copyName}); len(found) > 0 {
		t.Errorf("the events key appears in %v", found)
	}

	update(t, tenantSecret, func(s *corev1.Secret) { s.StringData = map[string]string{"secret": "short"} })
	eventually(t, "a short key is reported on the MailDomain", func() error {
		if err := get(t, md); err != nil {
			return err
		}
		return wantCondition(md.Status.Conditions, relayv1alpha1.ConditionRelaySecretsReady, "False/"+relayv1alpha1.ReasonSecretMissing)
	})
}
