package configsource

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// Route credentials, delivery event keys and DKIM keys come through the one relay
// secrets path: a folder per name, a file per key, followed like the config.
func TestFileSourceLoadsRelaySecrets(t *testing.T) {
	dir, secrets := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "relay.json")
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Domains: []snapshot.Domain{{
		Name: "example.com", Source: snapshot.ObjectRef{Namespace: "mail", Name: "example"},
		OutboundRoute:  &snapshot.Endpoint{Host: "smtp.provider.test", Port: 587, AuthSecret: "login"},
		DeliveryEvents: &snapshot.Webhook{URL: "https://hooks.example.com/mail", SecretName: "hook"},
		DKIM:           []snapshot.DKIMKey{{Selector: "ed1", Algorithm: snapshot.DKIMEd25519SHA256, SecretName: "dkim-ed1"}},
	}}}
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	replace(t, path, data)
	write := func(name, key, value string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(secrets, name), 0o700); err != nil {
			t.Fatal(err)
		}
		replace(t, filepath.Join(secrets, name, key), []byte(value))
	}
	write("login", "username", "shop\n")
	write("login", "password", "pw")
	write("dkim-ed1", snapshot.DKIMPrivateKeyKey, "-----BEGIN PRIVATE KEY-----\n")
	if err := os.MkdirAll(filepath.Join(secrets, "hook", "..data"), 0o700); err != nil { // a mounted Secret's own folder
		t.Fatal(err)
	}
	rec := newRecorder()
	run(t, &File{Path: path, SecretsDir: secrets}, rec)
	u := rec.waitApplied(t, "the snapshot", hasHash(s.Hash))
	if got := u.Secrets["login"]; string(got["username"]) != "shop" || string(got["password"]) != "pw" {
		t.Fatalf("route credentials = %q", got)
	}
	if got := u.Secrets["dkim-ed1"]; string(got[snapshot.DKIMPrivateKeyKey]) != "-----BEGIN PRIVATE KEY-----" {
		t.Fatalf("DKIM key = %q", got)
	}
	if got := u.Secrets["hook"]; len(got) != 0 {
		t.Fatalf("the key's folder holds no key yet, got %q", got)
	}
	write("hook", snapshot.WebhookSecretKey, "hmac-key\n")
	rec.waitApplied(t, "the delivery events key once written", func(u Update) bool {
		return string(u.Secrets["hook"][snapshot.WebhookSecretKey]) == "hmac-key"
	})
}
