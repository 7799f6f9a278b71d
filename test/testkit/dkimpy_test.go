package testkit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postwarden/postwarden/test/testkit"
)

// The independent verifier passes what go-msgauth signs, with both key types, and fails
// a body changed after signing: it checks something.
func TestDkimpyVerifiesSignaturesAndCatchesAChange(t *testing.T) {
	testkit.RequireDkimpy(t)
	dns := testkit.StartDNS(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns.Add(t, testkit.TXTRecord("r1._domainkey.example.com", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der)),
		testkit.TXTRecord("e1._domainkey.example.com", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(edPub)))

	msg := "From: <a@example.com>\r\nTo: <b@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"
	var signed bytes.Buffer
	body := strings.NewReader(msg)
	var sigs string
	for _, o := range []*dkim.SignOptions{
		{Domain: "example.com", Selector: "r1", Signer: rsaKey},
		{Domain: "example.com", Selector: "e1", Signer: edKey},
	} {
		var out bytes.Buffer
		if err := dkim.Sign(&out, body, o); err != nil {
			t.Fatal(err)
		}
		sigs += strings.TrimSuffix(out.String(), msg)
		body.Reset(msg)
	}
	signed.WriteString(sigs + msg)

	verify := func(msg string) []string {
		t.Helper()
		got, err := testkit.DkimpyVerify([]byte(msg), dns.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := verify(signed.String()); !slices.Equal(got, []string{"r1 pass", "e1 pass"}) {
		t.Errorf("a good message: %v", got)
	}
	changed := strings.Replace(signed.String(), "hello", "hellO", 1)
	if got := verify(changed); !slices.Equal(got, []string{"r1 fail", "e1 fail"}) {
		t.Errorf("a changed body: %v", got)
	}
	if got := verify(msg); len(got) != 0 {
		t.Errorf("an unsigned message: %v", got)
	}
	// The same keys through DNS.LookupTXT, as go-msgauth's verifier asks.
	vs, err := dkim.VerifyWithOptions(strings.NewReader(signed.String()), &dkim.VerifyOptions{LookupTXT: dns.LookupTXT})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Errorf("go-msgauth: %v %+v", err, vs)
	}
}
