package configsource

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// replace writes data to path the way editors and config tools do: a new file renamed
// over the old one.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileSourceLoadsAndFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	tlscerttest.WriteFiles(t, dir, "relay", tlscerttest.Issue(t, ca, "relay.example.org"))
	certs := []snapshot.Certificate{{CertFile: "relay.crt", KeyFile: "relay.key"}} // relative to the config
	first, data := newSnapshot(t, certs, "example.com")
	path := filepath.Join(dir, "relay.json")
	replace(t, path, data)

	rec := newRecorder()
	run(t, &File{Path: path}, rec)
	u := rec.waitApplied(t, "the first snapshot", hasHash(first.Hash))
	if len(u.Certificates) != 1 || len(u.Missing) != 0 {
		t.Fatalf("certificates %d, missing %v; want the one named, relative to the config", len(u.Certificates), u.Missing)
	}

	second, data := newSnapshot(t, certs, "example.com", "example.net")
	replace(t, path, data)
	rec.waitApplied(t, "the second snapshot after a rename", hasHash(second.Hash))

	if err := os.WriteFile(path, []byte(`{"apiVersion": "nope"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rec.waitRefused(t); !strings.Contains(err.Error(), "apiVersion") {
		t.Errorf("refusal %q does not say what is wrong", err)
	}

	// Writing in place, as `cat > file` does, is seen too.
	third, data := newSnapshot(t, certs, "example.org")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rec.waitApplied(t, "the third snapshot after an in-place write", hasHash(third.Hash))

	renewed := tlscerttest.Issue(t, ca, "relay.example.org")
	tlscerttest.WriteFiles(t, dir, "relay", renewed)
	rec.waitApplied(t, "the renewed certificate", func(u Update) bool {
		return len(u.Certificates) == 1 && bytes.Equal(u.Certificates[0].CertPEM, renewed.CertPEM)
	})
}

// Kubernetes mounts a Secret or ConfigMap as symlinks into a timestamped folder and
// swaps the "..data" symlink atomically on change.
func TestFileSourceFollowsSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	write := func(version string, data []byte) {
		t.Helper()
		ts := filepath.Join(dir, "..v"+version)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "relay.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink("..v"+version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first, data := newSnapshot(t, nil, "example.com")
	write("1", data)
	if err := os.Symlink("..data/relay.json", filepath.Join(dir, "relay.json")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	run(t, &File{Path: filepath.Join(dir, "relay.json")}, rec)
	rec.waitApplied(t, "the first snapshot", hasHash(first.Hash))
	second, data := newSnapshot(t, nil, "example.net")
	write("2", data)
	rec.waitApplied(t, "the snapshot after the symlink swap", hasHash(second.Hash))
}

func TestFileSourceRefusesWhatItCannotUse(t *testing.T) {
	tests := map[string]struct {
		content string
		want    string
	}{
		"a missing file is refused":              {"", "no such file"},
		"a document that is not JSON is refused": {"domains: []", "parsing snapshot"},
		"an unknown field is refused":            {`{"apiVersion":"` + snapshot.APIVersion + `","domain":[]}`, "unknown field"},
		"a wrong hash is refused":                {`{"apiVersion":"` + snapshot.APIVersion + `","hash":"00"}`, "hash mismatch"},
		"a certificate secret is refused without Kubernetes": {
			`{"apiVersion":"` + snapshot.APIVersion + `","certificates":[{"secretName":"relay-tls"}]}`, "cannot be used without Kubernetes"},
		"an invalid domain is refused": {`{"apiVersion":"` + snapshot.APIVersion + `","domains":[{"name":"Example.COM","source":{}}]}`, "not a lower-case"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "relay.json")
			if tt.content != "" {
				replace(t, path, []byte(tt.content))
			}
			rec := newRecorder()
			run(t, &File{Path: path}, rec)
			if err := rec.waitRefused(t); !strings.Contains(err.Error(), tt.want) {
				t.Errorf("refusal %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestFileSourceReportsMissingCertificates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.json")
	s, data := newSnapshot(t, []snapshot.Certificate{{CertFile: "later.crt", KeyFile: "later.key"}}, "example.com")
	replace(t, path, data)
	rec := newRecorder()
	run(t, &File{Path: path}, rec)
	u := rec.waitApplied(t, "the snapshot", hasHash(s.Hash))
	if len(u.Certificates) != 0 || len(u.Missing) != 1 {
		t.Fatalf("certificates %d, missing %v; want one missing", len(u.Certificates), u.Missing)
	}
	tlscerttest.WriteFiles(t, dir, "later", tlscerttest.Issue(t, testkit.NewCA(t), "relay.example.org"))
	rec.waitApplied(t, "the certificate once written", func(u Update) bool { return len(u.Certificates) == 1 })
}

// The delivery events CA bundle is read with each load and followed like the config:
// a new bundle makes a new update, and a bundle that went missing is refused.
func TestFileSourceFollowsTheEventsCABundle(t *testing.T) {
	dir := t.TempDir()
	s, data := newSnapshot(t, nil, "example.com")
	path := filepath.Join(dir, "relay.json")
	replace(t, path, data)
	caFile := filepath.Join(dir, "events-ca", "ca.crt")
	if err := os.Mkdir(filepath.Dir(caFile), 0o700); err != nil {
		t.Fatal(err)
	}
	first := []byte(testkit.NewCA(t).PEM())
	replace(t, caFile, first)

	rec := newRecorder()
	run(t, &File{Path: path, EventsCAFile: caFile}, rec)
	rec.waitApplied(t, "the snapshot with the bundle", func(u Update) bool {
		return u.Snapshot.Hash == s.Hash && bytes.Equal(u.EventsCA, first)
	})
	second := []byte(testkit.NewCA(t).PEM())
	replace(t, caFile, second)
	rec.waitApplied(t, "the replaced bundle", func(u Update) bool { return bytes.Equal(u.EventsCA, second) })

	if err := os.Remove(caFile); err != nil {
		t.Fatal(err)
	}
	if err := rec.waitRefused(t); !strings.Contains(err.Error(), "delivery events CA bundle") {
		t.Errorf("refusal %q does not name the bundle", err)
	}
}
