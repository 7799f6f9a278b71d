package controllers

import (
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestNewUsername(t *testing.T) {
	cases := map[string]struct{ label, want string }{
		"a label becomes a lower-case slug":            {"Billing App", `^billing-app-[a-z2-9]{6}@example\.com$`},
		"punctuation collapses into one dash":          {"scanner -- 3rd. floor", `^scanner-3rd-floor-[a-z2-9]{6}@example\.com$`},
		"a label without letters or digits gets smtp":  {"...", `^smtp-[a-z2-9]{6}@example\.com$`},
		"a long label is cut to keep usernames usable": {strings.Repeat("abc", 30), `^(abc){10}ab-[a-z2-9]{6}@example\.com$`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := newUsername(c.label, "example.com")
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(c.want).MatchString(got) {
				t.Errorf("newUsername(%q) = %q, want it to match %s", c.label, got, c.want)
			}
		})
	}
	a, _ := newUsername("app", "example.com")
	b, _ := newUsername("app", "example.com")
	if a == b {
		t.Errorf("two usernames for the same label are equal: %s", a)
	}
}

func TestNewPasswordHasAtLeast128BitsInASafeCharset(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := newPassword()
		// base32: 5 bits per character.
		if len(p)*5 < 128 {
			t.Fatalf("password %d characters long carries %d bits", len(p), len(p)*5)
		}
		if !regexp.MustCompile(`^[A-Z2-7]+$`).MatchString(p) {
			t.Fatalf("password holds characters outside A-Z2-7")
		}
		if seen[p] {
			t.Fatal("a password repeated")
		}
		seen[p] = true
	}
}

func TestReadyRule(t *testing.T) {
	key := compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: "ns", Name: "d"}
	render := func(l *renderLedger, hash, fingerprint string) {
		l.record(&compiler.Result{
			Snapshot: &snapshot.Snapshot{Hash: hash},
			Verdicts: map[compiler.ObjectKey]*compiler.Verdict{key: {Generation: 1, Accepted: true, Fingerprint: fingerprint}},
		})
	}
	cases := map[string]struct {
		renders  [][2]string // hash, fingerprint
		live     int
		reported []string
		want     bool
	}{
		"no live relay enforces nothing":                               {[][2]string{{"h1", "f1"}}, 0, nil, false},
		"every relay on the first config with the object":              {[][2]string{{"h1", "f1"}}, 2, []string{"h1", "h1"}, true},
		"a relay on a config this operator did not write":              {[][2]string{{"h1", "f1"}}, 1, []string{"other"}, false},
		"a relay on a newer config still enforces an unchanged object": {[][2]string{{"h1", "f1"}, {"h2", "f1"}}, 2, []string{"h1", "h2"}, true},
		"a changed object waits for the config that changed it":        {[][2]string{{"h1", "f1"}, {"h2", "f2"}}, 2, []string{"h1", "h2"}, false},
		"a changed object is enforced once all relays have it":         {[][2]string{{"h1", "f1"}, {"h2", "f2"}}, 2, []string{"h2", "h2"}, true},
		"a config that comes back counts as the newest":                {[][2]string{{"h1", "f1"}, {"h2", "f2"}, {"h1", "f1"}}, 1, []string{"h1"}, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v := newStatusViews()
			for _, r := range c.renders {
				render(v.ledger, r[0], r[1])
			}
			v.relays.set(c.live, c.reported)
			st, ok := v.status(key, 1)
			if !ok {
				t.Fatal("no status")
			}
			if enforced := st.readiness == enforcedEverywhere; enforced != c.want {
				t.Errorf("enforced = %v, want %v", enforced, c.want)
			}
		})
	}
}

func TestStatusWaitsForTheRenderOfTheCurrentGeneration(t *testing.T) {
	v := newStatusViews()
	key := compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: "ns", Name: "d"}
	v.ledger.record(&compiler.Result{Snapshot: &snapshot.Snapshot{Hash: "h"},
		Verdicts: map[compiler.ObjectKey]*compiler.Verdict{key: {Generation: 1, Accepted: true}}})
	if _, ok := v.status(key, 2); ok {
		t.Error("a verdict about generation 1 was used for generation 2")
	}
}

func TestShardIndex(t *testing.T) {
	r := &configReconciler{opts: OperatorOptions{ConfigName: "cfg"}}
	cases := map[string]struct {
		name  string
		index int
		ok    bool
	}{
		"a shard name gives its index":             {"cfg-3", 3, true},
		"a leading zero is not one of our names":   {"cfg-03", 0, false},
		"another config's Secret is not a shard":   {"other-1", 0, false},
		"a suffix that is not a number is ignored": {"cfg-x", 0, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			i, ok := r.shardIndex(c.name)
			if ok != c.ok || ok && i != c.index {
				t.Errorf("shardIndex(%q) = %d, %v", c.name, i, ok)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	var o OperatorOptions
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.BindFlags(fs)
	err := fs.Parse([]string{"--relay-hostnames", "relay.example.com, MX.Example.com", "--issuer-name", "letsencrypt",
		"--submission-port", "465", "--namespace", "mail"})
	if err != nil {
		t.Fatal(err)
	}
	o = o.withDefaults()
	if !slices.Equal(o.RelayHostnames, []string{"relay.example.com", "mx.example.com"}) || o.SubmissionHost != "relay.example.com" ||
		o.SubmissionPort != 465 || o.IssuerName != "letsencrypt" || o.IssuerKind != "ClusterIssuer" || o.Namespace != "mail" ||
		o.certificateSecretName() != "postwarden-relay-tls" {
		t.Errorf("options %+v", o)
	}
	if err := fs.Parse([]string{"--relay-hostnames", "not a name"}); err == nil {
		t.Error("a bad relay hostname was accepted")
	}
}

func TestRelayReportsNotifyOnlyObjectsWhoseReadyChanges(t *testing.T) {
	v := newStatusViews()
	old := compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: "ns", Name: "old"}
	changed := compiler.ObjectKey{Kind: compiler.KindMailDomain, Namespace: "ns", Name: "changed"}
	v.ledger.record(&compiler.Result{Snapshot: &snapshot.Snapshot{Hash: "h1"}, Verdicts: map[compiler.ObjectKey]*compiler.Verdict{
		old: {Generation: 1, Accepted: true, Fingerprint: "a"}, changed: {Generation: 1, Accepted: true, Fingerprint: "b"}}})
	v.ledger.record(&compiler.Result{Snapshot: &snapshot.Snapshot{Hash: "h2"}, Verdicts: map[compiler.ObjectKey]*compiler.Verdict{
		old: {Generation: 1, Accepted: true, Fingerprint: "a"}, changed: {Generation: 2, Accepted: true, Fingerprint: "c"}}})

	if got := v.relays.set(1, []string{"h1"}); len(got) != 2 {
		t.Errorf("the first live relay changes every object's Ready, got %v", got)
	}
	if got := v.relays.set(1, []string{"h1"}); len(got) != 0 {
		t.Errorf("a renewal that reports the same hash changes nothing, got %v", got)
	}
	if got := v.relays.set(1, []string{"h2"}); !slices.Equal(got, []compiler.ObjectKey{changed}) {
		t.Errorf("applying h2 changes only the object h2 changed, got %v", got)
	}
}

// newStatusViews wires a ledger, a relay view and a certificate view as the operator
// does.
func newStatusViews() statusViews {
	l := newRenderLedger()
	return statusViews{ledger: l, relays: &relayTracker{ledger: l}, cert: &certTracker{}}
}
