package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/dev"
)

// discovery is step 7: without a DiscoveryPolicy an unknown recipient is refused and
// nobody is asked; with one, the relay asks the domain's server, accepts what it knows,
// refuses what it does not, delivers, and the address shows in the policy's status.
func discovery(t testing.TB, ns, domain string, report func(string, time.Duration)) {
	ctx := t.Context()
	newcomer, nobody := "newcomer@"+domain, "nobody@"+domain
	if code := rcptOnPort25(t, newcomer); code != 550 {
		t.Fatalf("RCPT TO:<%s> without a DiscoveryPolicy: got %d, want 550", newcomer, code)
	}
	if n := env.Sink.RcptCount(newcomer); n != 0 {
		t.Fatalf("the domain's server was asked about %s %d times without a DiscoveryPolicy", newcomer, n)
	}

	applied := time.Now()
	kubectl(t, fmt.Sprintf(`apiVersion: relay.postwarden.dev/v1alpha1
kind: DiscoveryPolicy
metadata: {name: shop-discovery, namespace: %s}
spec:
  mailDomainRefs: [{name: shop-test}]
`, ns), "apply", "--server-side", "-f", "-")
	err := dev.Poll(ctx, enforceWithin, func() error {
		if code := rcptOnPort25(t, newcomer); code != 250 {
			return fmt.Errorf("RCPT TO:<%s> got %d", newcomer, code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the DiscoveryPolicy was not enforced within %v: %v", enforceWithin, err)
	}
	report("DiscoveryPolicy -> unknown recipient accepted by callout", time.Since(applied))
	if n := env.Sink.RcptCount(newcomer); n != 1 {
		t.Errorf("the domain's server was asked about %s %d times, want 1 callout", newcomer, n)
	}

	// The domain's server refuses nobody@; the second question is answered from the cache.
	for range 2 {
		if code := rcptOnPort25(t, nobody); code != 550 {
			t.Errorf("RCPT TO:<%s>, which the domain's server refuses: got %d, want 550", nobody, code)
		}
	}
	if n := env.Sink.RcptCount(nobody); n != 1 {
		t.Errorf("the domain's server was asked about %s %d times, want 1 callout and a cache hit", nobody, n)
	}

	// The message itself: accepted, delivered to the domain's server, counted as clean.
	msgID := fmt.Sprintf("e2e-discovered-%s", ns)
	c, err := smtp.Dial(env.Info.Inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("sender@elsewhere.example", []string{newcomer}, strings.NewReader(dev.NewMessage("sender@elsewhere.example", newcomer, "hello", msgID))); err != nil {
		t.Fatalf("sending to %s on port 25: %v", newcomer, err)
	}
	_ = c.Quit()
	sent := time.Now()
	waitMessage(t, env.Sink, msgID)

	err = dev.Poll(ctx, 30*time.Second, func() error {
		var p relayv1alpha1.DiscoveryPolicy
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shop-discovery"}, &p); err != nil {
			return err
		}
		for _, a := range p.Status.RecentAddresses {
			if a.Address == newcomer && a.State == "Pending" && p.Status.Discovered.Pending >= 1 {
				return nil
			}
		}
		return fmt.Errorf("%s is not a Pending address in the status yet: %+v", newcomer, p.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	report("delivery -> discovered address in the policy's status", time.Since(sent))
	// The full state is the operator's, in its namespace: an admin reads it there.
	out := kubectl(t, "", "get", "configmap", "-n", dev.OperatorNamespace, "-l", "relay.postwarden.dev/discovery-state="+ns+".shop-discovery",
		"-o", `jsonpath={range .items[*]}{.data.addresses\.jsonl}{end}`)
	if !strings.Contains(out, `"address":"`+newcomer+`"`) {
		t.Errorf("kubectl shows no %s in the policy's state ConfigMaps:\n%s", newcomer, out)
	}
}
