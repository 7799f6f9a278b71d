//go:build cluster

package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/test/testkit"
)

// dkimEndToEnd adds an Ed25519 selector beside the sample domain's RSA one, publishes
// the records the MailDomain's status asks for in the cluster's DNS (the sink), and
// sends through the relay Service until a message reaches the sink with both
// signatures; dkimpy and go-msgauth then verify it, with keys from a DNS server on
// loopback that holds the same records.
func dkimEndToEnd(t *testing.T, sub submitter) {
	kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge", "-p",
		`{"spec":{"dkim":{"selectors":[{"name":"pw2026a"},{"name":"ed2026a","keyType":"Ed25519"}]}}}`)
	var records []string
	eventually(t, 2*time.Minute, "status.dkim shows both records", func() error {
		var md relayv1alpha1.MailDomain
		if err := json.Unmarshal([]byte(kube(t, "", "get", "maildomain", "-n", "mail", "example-com", "-o", "json")), &md); err != nil {
			return err
		}
		d := md.Status.DKIM
		if d == nil || len(d.Selectors) != 2 || d.Selectors[0].Record == "" || d.Selectors[1].Record == "" {
			return fmt.Errorf("status.dkim %+v", d)
		}
		records = []string{testkit.TXTRecord(d.Selectors[0].RecordName, d.Selectors[0].Record),
			testkit.TXTRecord(d.Selectors[1].RecordName, d.Selectors[1].Record)}
		if d.SPF != nil {
			records = append(records, testkit.TXTRecord(d.SPF.RecordName, "v=spf1 "+d.SPF.Expected+" -all"))
		}
		if d.DMARC != nil {
			records = append(records, testkit.TXTRecord(d.DMARC.RecordName, d.DMARC.Expected))
		}
		return nil
	})
	resp, err := http.Post(fmt.Sprintf("http://%s:%d/dns", nodeIP, sinkHTTPPort), "text/plain", strings.NewReader(strings.Join(records, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publishing the records in the sink's DNS: %s", resp.Status)
	}
	local := testkit.StartDNS(t)
	local.Add(t, records...)
	eventually(t, 2*time.Minute, "the operator finds the records", func() error {
		out := kube(t, "", "get", "maildomain", "-n", "mail", "example-com", "-o",
			`jsonpath={.status.conditions[?(@.type=="DKIMPublished")].status}/{.status.conditions[?(@.type=="DKIMPublished")].reason}`)
		if out != "True/"+relayv1alpha1.ReasonRecordsPublished {
			return errors.New(out)
		}
		return nil
	})

	var raw []byte
	for i := 0; ; i++ {
		id := fmt.Sprintf("dkim-%d@cluster.test", i)
		c, err := sub.dial()
		if err != nil {
			t.Fatal(err)
		}
		err = send(c, sub.login.sender, "someone@example.org", id)
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, id)
		raw = sinkRaw(t, id)
		if bytes.Count(raw, []byte("DKIM-Signature:")) == 2 {
			break
		}
		if i == 30 {
			t.Fatalf("after %d messages, still not signed with both keys:\n%s", i+1, raw)
		}
		time.Sleep(time.Second) // the relays apply the new config within moments
	}
	report, err := testkit.DkimpyVerify(raw, local.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ed2026a pass", "pw2026a pass"}; !slices.Equal(report, want) {
		t.Fatalf("dkimpy: %v, want %v\n%s", report, want, raw)
	}
	t.Logf("dkimpy on the delivered message: %v", report)
	verifications, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: local.LookupTXT})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range verifications {
		if v.Err != nil || v.Domain != "example.com" {
			t.Errorf("go-msgauth: signature of %s: %v", v.Domain, v.Err)
		}
	}
	if len(verifications) != 2 {
		t.Errorf("go-msgauth found %d signatures, want 2", len(verifications))
	}
}

// sinkRaw reads the message the sink received last with this Message-ID.
func sinkRaw(t testing.TB, id string) []byte {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/messages/raw?id=%s", nodeIP, sinkHTTPPort, "%3C"+id+"%3E"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading message %s from the sink: %s %v", id, resp.Status, err)
	}
	return raw
}
