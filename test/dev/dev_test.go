package dev

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

// TestDevEnvironment brings the whole system up as `postwarden dev` does, then uses the
// facts it prints: a mail through submission, verified against the CA file, reaches the
// sink as an .eml file, and so does an inbound mail for the sample domain's user.
func TestDevEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out testenv.SyncBuffer
	env, err := Start(ctx, Options{
		Dir:            t.TempDir(),
		SubmissionAddr: "127.0.0.1:0",
		InboundAddr:    "127.0.0.1:0",
		SinkAddr:       "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:0",
		Out:            &out,
	})
	if err != nil {
		t.Fatalf("starting: %v\noutput:\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	info := env.Info
	for key, v := range map[string]string{"username": info.Username, "password": info.Password, "sender": info.Sender,
		"localRecipient": info.LocalRecipient, "caFile": info.CAFile, "kubeconfig": info.Kubeconfig, "sinkDir": info.SinkDir} {
		if v == "" {
			t.Errorf("info lacks %s", key)
		}
	}

	outbound := NewMessage(info.Sender, "someone@example.org", "first mail", "dev-outbound")
	if err := env.Submit(info.Username, info.Password, info.Sender, []string{"someone@example.org"}, outbound); err != nil {
		t.Fatalf("submitting: %v", err)
	}
	inbound := NewMessage("someone@example.org", info.LocalRecipient, "hello jane", "dev-inbound")
	if err := env.SendInbound("someone@example.org", []string{info.LocalRecipient}, inbound); err != nil {
		t.Fatalf("sending inbound: %v", err)
	}
	for _, id := range []string{"dev-outbound", "dev-inbound"} {
		m, err := env.Sink.Wait(ctx, func(m testkit.Message) bool { return bytes.Contains(m.Data, []byte("<"+id+"@dev.postwarden>")) })
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if filepath.Dir(m.Path) != info.SinkDir {
			t.Errorf("%s saved as %s, not in %s", id, m.Path, info.SinkDir)
		}
		saved, err := os.ReadFile(m.Path)
		if err != nil || !bytes.Equal(saved, m.Data) {
			t.Errorf("%s: the .eml file does not hold the bytes received (%v)", id, err)
		}
		// The sample domain signs its outbound mail; the records are in the loopback DNS.
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: env.DNS.LookupTXT})
		switch {
		case err != nil:
			t.Errorf("%s: verifying DKIM: %v", id, err)
		case id == "dev-outbound" && (len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com"):
			t.Errorf("the outbound mail is not signed by example.com with a signature that verifies: %+v", vs)
		case id == "dev-inbound" && len(vs) != 0:
			t.Errorf("the inbound mail is signed: %+v", vs)
		}
	}
	// The sample domain adds smtp.example.com to the relay's Certificate: the stand-in
	// issuer signs a new certificate for the new names, and the relay serves it.
	err = Poll(ctx, time.Minute, func() error {
		conf := env.TLSConfig()
		conf.ServerName = "smtp.example.com"
		c, err := smtp.DialStartTLS(info.Submission, conf)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Noop() // the handshake, and so the verification, happens here
	})
	if err != nil {
		t.Errorf("the relay does not serve a certificate for the sample's submission hostname: %v", err)
	}
	if !strings.Contains(out.String(), "sink: mail from <"+info.Sender+">") {
		t.Errorf("the sink printed no summary of the outbound mail:\n%s", out.String())
	}

	// The operator's discovery report credential works on the real relay, as the sample
	// policy's report sender, the way the operator submits its weekly report.
	var report corev1.Secret
	err = Poll(ctx, time.Minute, func() error {
		return env.Client.Get(ctx, types.NamespacedName{Namespace: OperatorNamespace, Name: controllers.ReportSecretName}, &report)
	})
	if err != nil {
		t.Fatalf("the report credential Secret: %v", err)
	}
	user, pass := string(report.Data["username"]), string(report.Data["password"])
	if err := env.WaitLogin(ctx, user, pass, true); err != nil {
		t.Fatal(err)
	}
	msg := NewMessage("postmaster@example.com", "jane.doe@example.com", "discovery report", "dev-report")
	if err := env.Submit(user, pass, "postmaster@example.com", []string{"jane.doe@example.com"}, msg); err != nil {
		t.Fatalf("submitting as the report sender: %v", err)
	}
	if _, err := env.Sink.Wait(ctx, func(m testkit.Message) bool { return bytes.Contains(m.Data, []byte("<dev-report@dev.postwarden>")) }); err != nil {
		t.Fatalf("the report-like mail: %v", err)
	}
	if err := env.Submit(user, pass, info.Sender, []string{"jane.doe@example.com"}, msg); err == nil {
		t.Error("the report credential may send as another address")
	}
}
