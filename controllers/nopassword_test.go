package controllers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// leaks returns where in the API server's objects, and in the operator's logs, any of
// the secrets appears, except in the Secrets named skip.
func leaks(t *testing.T, secrets []string, skip ...client.ObjectKey) []string {
	t.Helper()
	ctx := context.Background()
	disc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := disc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	scan := func(where, text string) {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				found = append(found, where)
			}
		}
	}
	scanned := 0
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range list.APIResources {
			if strings.Contains(res.Name, "/") || !contains(res.Verbs, "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(res.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatalf("listing %s: %v", res.Name, err)
			}
			for _, item := range items.Items {
				where := fmt.Sprintf("%s %s/%s", res.Name, item.GetNamespace(), item.GetName())
				if res.Name == "secrets" && gv.Group == "" {
					if slices.Contains(skip, client.ObjectKey{Namespace: item.GetNamespace(), Name: item.GetName()}) {
						continue
					}
					data, _, _ := unstructuredData(item.Object)
					for k, v := range data {
						scan(where+" data."+k, v)
					}
				}
				body, err := json.Marshal(item.Object)
				if err != nil {
					t.Fatal(err)
				}
				scan(where, string(body))
				scanned++
			}
		}
	}
	if scanned < 50 {
		t.Fatalf("scanned only %d objects; the scan is not looking", scanned)
	}
	// The config is gzipped in its Secrets: scan it assembled, as a relay reads it.
	s, err := currentSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(s)
	scan("the relay config", string(body))
	scan("the operator's logs", logs.String())
	return found
}

func unstructuredData(obj map[string]any) (map[string]string, bool, error) {
	raw, ok := obj["data"].(map[string]any)
	if !ok {
		return nil, false, nil
	}
	out := map[string]string{}
	for k, v := range raw {
		s, _ := v.(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, true, err
		}
		out[k] = string(b)
	}
	return out, true, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestNoPasswordAnywhereButItsSecret(t *testing.T) {
	cred, first := issuedCredential(t, "nopass")
	// Rotate once, so that a retired password is looked for too.
	update(t, cred, func(c *relayv1alpha1.SMTPCredential) { c.Spec.RotationToken = "once" })
	var current corev1.Secret
	eventually(t, "rotated", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(first), &current); err != nil {
			return err
		}
		if current.UID == first.UID {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	snapshotWhere(t, "the new hash is in the config", func(s *snapshot.Snapshot) error {
		if c := findCredential(s, cred.Namespace, cred.Name); !hashVerifies(c, &current) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	eventFor(t, cred, "PasswordRotated")
	passwords := []string{string(first.Data["password"]), string(current.Data["password"])}

	// The scan finds the password where it must be: proof that it looks.
	if got := leaks(t, passwords, client.ObjectKey{}); len(got) == 0 {
		t.Fatal("the scan did not find the password even in its own Secret")
	}
	if got := leaks(t, passwords, client.ObjectKeyFromObject(&current)); len(got) > 0 {
		t.Errorf("a password appears outside its Secret: %s", strings.Join(got, "; "))
	}
}

// The operator's own report password is in its Secret only; the config holds its hash.
func TestReportPasswordOnlyInItsSecret(t *testing.T) {
	ns := newNamespace(t, "reportpass")
	create(t, mailDomain(ns, "main", ns+".example", "a@"+ns+".example"))
	create(t, discoveryPolicy(ns, "learn", 3, "main"))
	secret := &corev1.Secret{ObjectMeta: objectMeta(operatorNS, controllers.ReportSecretName)}
	eventually(t, "the report credential Secret exists", func() error { return get(t, secret) })
	password := string(secret.Data["password"])
	if len(password) < 20 || secret.Immutable == nil || !*secret.Immutable {
		t.Fatalf("the report Secret holds a %d-character password, immutable %v", len(password), secret.Immutable)
	}
	snapshotWhere(t, "the report credential is in the config, hashed, for the policy's report sender", func(s *snapshot.Snapshot) error {
		for _, c := range s.Credentials {
			if c.Username == string(secret.Data["username"]) {
				if !verifyHash(c.PasswordHash, password) || !contains(c.AllowedSenders, "postmaster@"+ns+".example") {
					return fmt.Errorf("credential %+v", c)
				}
				return nil
			}
		}
		return fmt.Errorf("no report credential")
	})
	if got := leaks(t, []string{password}, client.ObjectKey{}); len(got) == 0 {
		t.Fatal("the scan did not find the password even in its own Secret")
	}
	if got := leaks(t, []string{password}, client.ObjectKeyFromObject(secret)); len(got) > 0 {
		t.Errorf("the report password appears outside its Secret: %s", strings.Join(got, "; "))
	}
}
