package dev

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// sampleFacts are what the summary needs from the samples.
type sampleFacts struct {
	mailDomain       string
	credentialSecret string
	sender           string
	localRecipient   string
}

// applySamples creates config/samples in namespace, with the MailDomain's inbound
// delivery pointed at the stand-in mail server (the dev command is the user here: it applies a
// changed copy, the operator never writes spec).
func applySamples(ctx context.Context, c client.Client, root, namespace, inboundHost string, inboundPort int) (sampleFacts, error) {
	var facts sampleFacts
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil || len(files) == 0 {
		return facts, fmt.Errorf("no samples in config/samples")
	}
	slices.Sort(files)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return facts, err
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return facts, fmt.Errorf("parsing %s: %w", file, err)
		}
		obj.SetNamespace(namespace)
		switch obj.GetKind() {
		case "MailDomain":
			facts.mailDomain = obj.GetName()
			if err := unstructured.SetNestedMap(obj.Object, map[string]any{
				"host": inboundHost, "port": int64(inboundPort),
			}, "spec", "inboundDelivery"); err != nil {
				return facts, err
			}
			users, _, _ := unstructured.NestedSlice(obj.Object, "spec", "users")
			if len(users) > 0 {
				facts.localRecipient, _, _ = unstructured.NestedString(users[0].(map[string]any), "address")
			}
		case "SMTPCredential":
			facts.credentialSecret, _, _ = unstructured.NestedString(obj.Object, "spec", "secretName")
			senders, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "allowedSenders")
			if len(senders) > 0 {
				facts.sender = senders[0]
			}
		}
		if err := c.Create(ctx, &obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return facts, fmt.Errorf("applying %s: %w", filepath.Base(file), err)
		}
	}
	if facts.credentialSecret == "" || facts.sender == "" || facts.localRecipient == "" {
		return facts, fmt.Errorf("the samples lack a credential with allowedSenders or a domain with users")
	}
	return facts, nil
}
