//go:build cluster

package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// routeLogsIn sends the sample domain's outbound mail through a smarthost that asks for
// STARTTLS and AUTH (the sink's AUTH listener), with credentials from a Secret of the
// tenant's namespace. With a wrong password the mail waits and the MailDomain gets a
// RouteLoginFailed Event; once the tenant fixes the Secret, the waiting mail and new
// mail arrive logged in as its user. The route is removed at the end.
func routeLogsIn(t *testing.T, sub submitter) {
	secret := func(password string) {
		kube(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: route-login, namespace: mail}
type: kubernetes.io/basic-auth
stringData: {username: route-user, password: %q}
`, password), "apply", "--server-side", "--force-conflicts", "-f", "-")
	}
	// The relays only ever see a wrong password first, so the mail cannot slip out
	// with a right one before the change reaches them.
	secret("a-wrong-password-0123456789")
	kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge", "-p",
		fmt.Sprintf(`{"spec":{"outboundRoute":{"host":%q,"port":587,"auth":{"secretRef":{"name":"route-login"}}}}}`, sinkIP))
	t.Cleanup(func() {
		kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge", "-p", `{"spec":{"outboundRoute":null}}`)
	})
	eventually(t, 2*time.Minute, "the MailDomain's route credentials are copied for the relays", func() error {
		out := kube(t, "", "get", "maildomain", "-n", "mail", "example-com", "-o",
			`jsonpath={.status.conditions[?(@.type=="RelaySecretsReady")].status}/{.status.conditions[?(@.type=="Ready")].status}`)
		if out != "True/True" {
			return errors.New(out)
		}
		return nil
	})
	sendOne := func(id string) {
		t.Helper()
		c, err := sub.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := send(c, sub.login.sender, "someone@example.org", id); err != nil {
			t.Fatal(err)
		}
	}
	sendOne("route-wrong@cluster.test")
	eventually(t, 2*time.Minute, "the MailDomain's owner hears that the route cannot log in", func() error {
		events := kube(t, "", "get", "events.events.k8s.io", "-n", "mail", "--field-selector",
			"reason="+relayv1alpha1.ReasonRouteLoginFailed, "-o", "name")
		if strings.TrimSpace(events) == "" {
			return errors.New("no RouteLoginFailed Event")
		}
		return nil
	})
	if n := sinkCounts(t)["route-wrong@cluster.test"]; n != 0 {
		t.Fatalf("mail went out although the route could not log in")
	}

	secret("route-password-0123456789")
	waitDelivered(t, "route-wrong@cluster.test") // the deferred mail, at its retry
	sendOne("route@cluster.test")
	waitDelivered(t, "route@cluster.test")
	logins := sinkLogins(t)
	for _, id := range []string{"route-wrong@cluster.test", "route@cluster.test"} {
		if logins[id] != "route-user" {
			t.Errorf("%s reached the sink as %q, not through the route's login", id, logins[id])
		}
	}
}

// sinkLogins reads which user each message on the sink's AUTH listener logged in as,
// by Message-ID (without angle brackets).
func sinkLogins(t testing.TB) map[string]string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/logins", nodeIP, sinkHTTPPort))
	if err != nil {
		t.Fatalf("reading the sink's logins: %v", err)
	}
	defer resp.Body.Close()
	var byID map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&byID); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for id, user := range byID {
		out[strings.Trim(id, "<>")] = user
	}
	return out
}
