package controllers_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// issuedCredential creates a MailDomain and an SMTPCredential and waits until the
// credential is in the written config.
func issuedCredential(t *testing.T, prefix string) (*relayv1alpha1.SMTPCredential, *corev1.Secret) {
	t.Helper()
	ns := newNamespace(t, prefix)
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "app@"+domain, "other@"+domain))
	cred := smtpCredential(ns, "billing", "main", "Billing App")
	create(t, cred)
	secret := secretOf(t, cred)
	snapshotWhere(t, "the credential is in the config", func(s *snapshot.Snapshot) error {
		if c := findCredential(s, ns, "billing"); !hashVerifies(c, secret) {
			return fmt.Errorf("credential %s/billing is not in the config with the Secret's hash", ns)
		}
		return nil
	})
	return cred, secret
}

func TestCredentialSecretIsIssuedWithUsableContent(t *testing.T) {
	cred, secret := issuedCredential(t, "issue")
	d := secret.Data
	username, password := string(d["username"]), string(d["password"])
	if !strings.HasPrefix(username, "billing-app-") || !strings.HasSuffix(username, "@"+cred.Namespace+".example") {
		t.Errorf("username %q is not derived from the label and the domain", username)
	}
	if len(password) < 26 {
		t.Errorf("password has %d characters, want at least 26 (130 bits of base32)", len(password))
	}
	if string(d["host"]) != relayHostname || string(d["port"]) != "587" {
		t.Errorf("host/port are %q/%q, want %s/587", d["host"], d["port"], relayHostname)
	}
	if secret.Type != corev1.SecretTypeOpaque || secret.Immutable == nil || !*secret.Immutable {
		t.Errorf("Secret type %s immutable %v, want an immutable Opaque Secret", secret.Type, secret.Immutable)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.Kind != "SMTPCredential" || ref.Name != cred.Name {
		t.Errorf("Secret controller reference %+v, want the SMTPCredential", ref)
	}
	if _, ok := secret.Annotations[controllers.AnnotationPasswordHash]; ok {
		t.Errorf("the tenant's Secret carries the password hash; only the login record may")
	}
	var record corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: operatorNS, Name: "postwarden-login-" + string(cred.UID)}, &record); err != nil {
		t.Fatalf("the login record: %v", err)
	}
	hash, err := snapshot.ParsePasswordHash(record.Annotations[controllers.AnnotationPasswordHash])
	if err != nil || !hash.Verify(password) {
		t.Errorf("the login record's hash does not verify the Secret's password (err %v)", err)
	}
	if len(record.Data) != 0 {
		t.Errorf("the login record holds data: %v", slices.Collect(maps.Keys(record.Data)))
	}
	eventually(t, "status shows the username and Secret", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		s := cred.Status
		if s.Username != username || s.SecretName != secret.Name || s.IssuedAt == nil {
			return fmt.Errorf("status %+v", s)
		}
		return wantCondition(s.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled)
	})
}

func TestCredentialSecretIsWrittenOnce(t *testing.T) {
	cred, secret := issuedCredential(t, "once")
	unchanged := func(when string) {
		t.Helper()
		var now corev1.Secret
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(secret), &now); err != nil {
			t.Fatal(err)
		}
		if now.UID != secret.UID || now.ResourceVersion != secret.ResourceVersion || string(now.Data["password"]) != string(secret.Data["password"]) {
			t.Errorf("%s: the Secret changed (uid %s→%s, resourceVersion %s→%s)", when, secret.UID, now.UID, secret.ResourceVersion, now.ResourceVersion)
		}
	}
	editAndWait := func(sender string) {
		t.Helper()
		update(t, cred, func(c *relayv1alpha1.SMTPCredential) { c.Spec.AllowedSenders = []string{sender} })
		gen := cred.Generation
		eventually(t, "status observes the edit", func() error {
			if err := get(t, cred); err != nil {
				return err
			}
			if cred.Status.ObservedGeneration != gen {
				return fmt.Errorf("observedGeneration %d, want %d", cred.Status.ObservedGeneration, gen)
			}
			return wantCondition(cred.Status.Conditions, relayv1alpha1.ConditionAccepted, "True/"+relayv1alpha1.ReasonCompiled)
		})
	}
	editAndWait("app@" + cred.Namespace + ".example")
	unchanged("after an edit of the SMTPCredential")

	stopRunningOperator()
	if err := startOperator(); err != nil {
		t.Fatal(err)
	}
	editAndWait("other@" + cred.Namespace + ".example")
	unchanged("after an operator restart")
	snapshotWhere(t, "the restarted operator compiles the same hash", func(s *snapshot.Snapshot) error {
		c := findCredential(s, cred.Namespace, cred.Name)
		if !hashVerifies(c, secret) || len(c.AllowedSenders) != 1 || c.AllowedSenders[0] != "other@"+cred.Namespace+".example" {
			return fmt.Errorf("credential entry %+v", c)
		}
		return nil
	})
}

// eventFor waits for an Event with reason on obj.
func eventFor(t *testing.T, obj client.Object, reason string) {
	t.Helper()
	eventually(t, "Event "+reason, func() error {
		var events eventsv1.EventList
		if err := k8s.List(context.Background(), &events, client.InNamespace(obj.GetNamespace())); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Regarding.Name == obj.GetName() && e.Reason == reason {
				return nil
			}
		}
		return fmt.Errorf("no Event %s on %s among %d", reason, obj.GetName(), len(events.Items))
	})
}

func TestDeletedSecretIsRegeneratedWithAnEvent(t *testing.T) {
	cred, old := issuedCredential(t, "regen")
	if err := k8s.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	var fresh corev1.Secret
	eventually(t, "a new Secret replaces the deleted one", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(old), &fresh); err != nil {
			return err
		}
		if fresh.UID == old.UID {
			return fmt.Errorf("still the old Secret")
		}
		return nil
	})
	if string(fresh.Data["password"]) == string(old.Data["password"]) {
		t.Error("the new Secret has the old password")
	}
	if string(fresh.Data["username"]) != string(old.Data["username"]) {
		t.Errorf("username changed from %s to %s; it should stay", old.Data["username"], fresh.Data["username"])
	}
	eventFor(t, cred, "SecretRecreated")
	snapshotWhere(t, "the config carries the new password's hash", func(s *snapshot.Snapshot) error {
		if c := findCredential(s, cred.Namespace, cred.Name); !hashVerifies(c, &fresh) {
			return fmt.Errorf("credential entry %+v", c)
		}
		return nil
	})
}

func TestRotationReplacesTheSecret(t *testing.T) {
	cred, old := issuedCredential(t, "rotate")
	update(t, cred, func(c *relayv1alpha1.SMTPCredential) { c.Spec.RotationToken = "2026-11-23" })
	var fresh corev1.Secret
	eventually(t, "a new Secret for the new token", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(old), &fresh); err != nil {
			return err
		}
		if fresh.UID == old.UID || fresh.Annotations[controllers.AnnotationRotationToken] != "2026-11-23" {
			return fmt.Errorf("Secret uid %s token %q", fresh.UID, fresh.Annotations[controllers.AnnotationRotationToken])
		}
		return nil
	})
	if string(fresh.Data["password"]) == string(old.Data["password"]) {
		t.Error("rotation kept the old password")
	}
	eventFor(t, cred, "PasswordRotated")
	eventually(t, "status records the token", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		if cred.Status.RotationToken != "2026-11-23" {
			return fmt.Errorf("status.rotationToken %q", cred.Status.RotationToken)
		}
		return nil
	})
	snapshotWhere(t, "only the new password works", func(s *snapshot.Snapshot) error {
		c := findCredential(s, cred.Namespace, cred.Name)
		if c == nil {
			return fmt.Errorf("credential missing")
		}
		h, err := snapshot.ParsePasswordHash(c.PasswordHash)
		if err != nil {
			return err
		}
		if h.Verify(string(old.Data["password"])) || !h.Verify(string(fresh.Data["password"])) {
			return fmt.Errorf("the config still accepts the old password, or not the new one")
		}
		return nil
	})
}

func TestDeletingTheCredentialRevokesIt(t *testing.T) {
	cred, _ := issuedCredential(t, "revoke")
	if err := k8s.Delete(context.Background(), cred); err != nil {
		t.Fatal(err)
	}
	snapshotWhere(t, "the credential leaves the config", func(s *snapshot.Snapshot) error {
		if findCredential(s, cred.Namespace, cred.Name) != nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

func TestForeignSecretIsNotOverwritten(t *testing.T) {
	ns := newNamespace(t, "foreign")
	create(t, mailDomain(ns, "main", ns+".example", "a@"+ns+".example"))
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-smtp"}, StringData: map[string]string{"password": "not-yours"}}
	create(t, mine)
	cred := smtpCredential(ns, "app", "main", "app")
	create(t, cred)
	eventually(t, "the credential reports the Secret in its way", func() error {
		if err := get(t, cred); err != nil {
			return err
		}
		return wantCondition(cred.Status.Conditions, relayv1alpha1.ConditionAccepted, "False/"+relayv1alpha1.ReasonInvalidSpec)
	})
	var now corev1.Secret
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "app-smtp"}, &now); err != nil {
		t.Fatal(err)
	}
	if string(now.Data["password"]) != "not-yours" || now.ResourceVersion != mine.ResourceVersion {
		t.Error("the operator changed a Secret it does not own")
	}
	// Once the foreign Secret is gone, the credential is issued.
	if err := k8s.Delete(context.Background(), &now); err != nil {
		t.Fatal(err)
	}
	eventually(t, "issued after the foreign Secret is removed", func() error {
		var s corev1.Secret
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "app-smtp"}, &s); err != nil {
			return err
		}
		if metav1.GetControllerOf(&s) == nil {
			return fmt.Errorf("not ours yet")
		}
		return nil
	})
}
