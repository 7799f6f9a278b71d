package crd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

func sampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want a sample per kind in config/samples, found %v (%v)", files, err)
	}
	return files
}

func TestEverySampleIsAccepted(t *testing.T) {
	ns := newNamespace(t)
	kinds := map[string]bool{}
	for _, file := range sampleFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		obj := edit(t, string(data), func(map[string]any) {})
		obj.SetNamespace(ns)
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Errorf("%s: %v", filepath.Base(file), err)
		}
		kinds[obj.GetKind()] = true
	}
	for _, kind := range []string{"MailDomain", "SMTPCredential", "DiscoveryPolicy", "TLSDeliveryPolicy"} {
		if !kinds[kind] {
			t.Errorf("config/samples has no %s", kind)
		}
	}
}

func TestKubectlServerSideApplyOfTheSamples(t *testing.T) {
	ns := newNamespace(t)
	dir := filepath.Join(testenv.RepoRoot(), "config", "samples")
	for range 2 { // the second apply must be a clean no-op
		if _, err := env.Kubectl(nil, "apply", "--server-side", "--field-manager=crd-test", "-n", ns, "-f", dir); err != nil {
			t.Fatal(err)
		}
	}
	out, err := env.Kubectl(nil, "get", "postwarden", "-n", ns, "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"maildomain.relay.postwarden.dev/example-com",
		"smtpcredential.relay.postwarden.dev/billing-app",
		"discoverypolicy.relay.postwarden.dev/example-com-discovery",
		"tlsdeliverypolicy.relay.postwarden.dev/bank-verified-tls",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get postwarden does not list %s:\n%s", want, out)
		}
	}
}

func TestKubectlExplainReadsLikeDocumentation(t *testing.T) {
	// The API server publishes a new CRD's OpenAPI schema, which explain reads, a moment
	// after the CRD is established; until then explain cannot find the resource.
	var out string
	testkit.Eventually(t, 30*time.Second, "kubectl explain maildomain.spec", func() (err error) {
		out, err = env.Kubectl(nil, "explain", "maildomain.spec")
		return err
	})
	for _, want := range []string{
		"domain is the DNS name the relay serves",
		"sendingServers are the networks of the domain's own mail servers",
		"inboundDelivery is the domain's own mail server",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("kubectl explain maildomain.spec lacks %q:\n%s", want, out)
		}
	}
}
