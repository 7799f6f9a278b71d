package controllers_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func verifyHash(hash, password string) bool {
	h, err := snapshot.ParsePasswordHash(hash)
	return err == nil && h.Verify(password)
}

// hashVerifies reports whether the config's hash for c verifies the Secret's password.
func hashVerifies(c *snapshot.Credential, secret *corev1.Secret) bool {
	if c == nil {
		return false
	}
	h, err := snapshot.ParsePasswordHash(c.PasswordHash)
	return err == nil && h.Verify(string(secret.Data["password"]))
}

// A tenant may edit the annotations of its credential Secret (immutable covers only the
// data): neither another login's username nor a password hash of its choosing may reach
// the relay that way, since the login lives in a record in the operator's namespace.
func TestTenantCannotRewriteItsLogin(t *testing.T) {
	ns := newNamespace(t, "forge")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "app@"+domain))
	victim := smtpCredential(ns, "victim", "main", "victim")
	create(t, victim)
	victimSecret := secretOf(t, victim)
	forger := smtpCredential(ns, "forger", "main", "forger")
	create(t, forger)
	secret := secretOf(t, forger)

	weak, err := snapshot.HashPassword("password")
	if err != nil {
		t.Fatal(err)
	}
	secret.Annotations[controllers.AnnotationUsername] = string(victimSecret.Data["username"])
	secret.Annotations[controllers.AnnotationPasswordHash] = weak
	if err := k8s.Update(context.Background(), secret); err != nil {
		t.Fatalf("editing the Secret's annotations: %v", err)
	}
	// Renders run one at a time: once a credential created after the edit is in the
	// config, the edit has been rendered too.
	marker := smtpCredential(ns, "marker", "main", "marker")
	create(t, marker)
	snapshotWhere(t, "a render after the edit keeps both logins as issued", func(s *snapshot.Snapshot) error {
		if findCredential(s, ns, "marker") == nil {
			return fmt.Errorf("no render after the edit yet")
		}
		for _, c := range []struct {
			cred   *relayv1alpha1.SMTPCredential
			secret *corev1.Secret
		}{{victim, victimSecret}, {forger, secret}} {
			entry := findCredential(s, ns, c.cred.Name)
			if entry == nil || entry.Username != string(c.secret.Data["username"]) || !hashVerifies(entry, c.secret) {
				return fmt.Errorf("credential %s: %+v", c.cred.Name, entry)
			}
			if h, err := snapshot.ParsePasswordHash(entry.PasswordHash); err == nil && h.Verify("password") {
				return fmt.Errorf("credential %s accepts the tenant's own password", c.cred.Name)
			}
		}
		return nil
	})
}

// A credential issued before login records existed (its hash in its Secret's
// annotations, no record) keeps its password across the upgrade: the record is made
// once from those annotations.
func TestLoginRecordIsMadeFromALegacySecret(t *testing.T) {
	ns := newNamespace(t, "legacy")
	domain := ns + ".example"
	create(t, mailDomain(ns, "main", domain, "app@"+domain))
	cred := smtpCredential(ns, "old", "main", "old")
	create(t, cred)
	secret := secretOf(t, cred)
	hash, err := snapshot.HashPassword(string(secret.Data["password"]))
	if err != nil {
		t.Fatal(err)
	}
	secret.Annotations[controllers.AnnotationPasswordHash] = hash
	if err := k8s.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	record := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "postwarden-login-" + string(cred.UID)}}
	if err := k8s.Delete(context.Background(), record); err != nil {
		t.Fatalf("deleting the login record: %v", err)
	}
	eventually(t, "the record is made from the legacy Secret", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(record), record); err != nil {
			return err
		}
		if record.Annotations[controllers.AnnotationPasswordHash] != hash {
			return fmt.Errorf("record annotations %v", record.Annotations)
		}
		return nil
	})
	var current corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(secret), &current); err != nil {
		t.Fatal(err)
	}
	if current.UID != secret.UID {
		t.Fatalf("the Secret was replaced; the legacy password should have been kept")
	}
	snapshotWhere(t, "the legacy password still logs in", func(s *snapshot.Snapshot) error {
		if c := findCredential(s, ns, "old"); !hashVerifies(c, secret) {
			return fmt.Errorf("credential entry %+v", c)
		}
		return nil
	})
}
