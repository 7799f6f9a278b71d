package chart

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Values that would deploy something broken or unsafe are refused at render time, by
// values.schema.json or by the templates, with a message that says what is wrong.
func TestChartRefusesBadValues(t *testing.T) {
	cases := map[string]struct {
		values string
		want   string
	}{
		"a misspelt key is refused, not ignored": {
			values: `relay: {replica: 3}`,
			want:   "replica",
		},
		"an unknown spool type is refused": {
			values: `relay: {spool: {type: hostPath}}`,
			want:   "/relay/spool/type",
		},
		"a privileged container port is refused: the relay runs as non-root": {
			values: `relay: {submission: {containerPort: 587}}`,
			want:   "containerPort",
		},
		"a relay hostname that is not a lower-case DNS name is refused": {
			values: `operator: {relayHostnames: [SMTP.Example.com]}`,
			want:   "relayHostnames",
		},
		"an issuer kind other than Issuer or ClusterIssuer is refused": {
			values: `operator: {certificate: {issuerRef: {name: x, kind: Certificate}}}`,
			want:   "kind",
		},
		"a smarthost without a port is refused": {
			values: `relay: {delivery: {smarthost: smtp.provider.example}}`,
			want:   "smarthost",
		},
		"an allowed outbound network that is not a CIDR is refused": {
			values: `relay: {outboundAllowedNetworks: [mail.internal]}`,
			want:   "outboundAllowedNetworks",
		},
		"a relay log level the relay does not know is refused": {
			values: `relay: {logLevel: verbose}`,
			want:   "logLevel",
		},
		"a duration the relay cannot parse is refused": {
			values: `relay: {leaseDuration: 30}`,
			want:   "leaseDuration",
		},
		"traffic policy Cluster without the PROXY protocol is refused: SNAT would make the allowlist an open relay": {
			values: `relay: {service: {externalTrafficPolicy: Cluster}}`,
			want:   "open relay",
		},
		"the PROXY protocol without trusted CIDRs is refused": {
			values: `relay: {proxyProtocol: {enabled: true}}`,
			want:   "trustedCIDRs",
		},
		"relays with neither listener are refused": {
			values: `relay: {submission: {enabled: false}, inbound: {enabled: false}}`,
			want:   "relay.submission or relay.inbound",
		},
		"a termination grace period shorter than the drain is refused": {
			values: `relay: {shutdown: {drainDelaySeconds: 30, gracePeriodSeconds: 60, terminationGracePeriodSeconds: 100}}`,
			want:   "kill relays mid-drain",
		},
		"a delivery events CA bundle in both a ConfigMap and a Secret is refused": {
			values: `relay: {deliveryEvents: {caBundle: {configMapName: a, secretName: b}}}`,
			want:   "configMapName or secretName, not both",
		},
		"a delivery events CA bundle key that is not a key is refused": {
			values: `relay: {deliveryEvents: {caBundle: {secretName: b, key: "ca/crt"}}}`,
			want:   "key",
		},
		"several operators without leader election are refused": {
			values: `operator: {replicas: 2, leaderElection: false}`,
			want:   "leaderElection",
		},
		"an autoscaler whose minimum is above its maximum is refused": {
			values: `relay: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 3}}`,
			want:   "minReplicas is above maxReplicas",
		},
		"an autoscaler without a target is refused": {
			values: `relay: {autoscaling: {enabled: true, targetCPUUtilizationPercentage: null}}`,
			want:   "targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := render("postwarden", "pw", values(c.values))
			if err == nil {
				t.Fatalf("values %s rendered", c.values)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// Every value in values.yaml has a comment, and every schema property a description.
func TestValuesAreDocumented(t *testing.T) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(read(t, filepath.Join(chartDir, "values.yaml")), &doc); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(read(t, filepath.Join(chartDir, "values.schema.json")), &schema); err != nil {
		t.Fatal(err)
	}
	checkDocumented(t, "", doc.Content[0], schema)
}

// checkDocumented walks values.yaml beside the schema. A key the schema describes as a
// section (an object with properties) needs no comment of its own, but everything in it
// is checked; any other key is a value and needs a comment above it.
func checkDocumented(t *testing.T, path string, node *yamlv3.Node, schema map[string]any) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	for i := 0; i+1 < len(node.Content); i += 2 {
		key, value := node.Content[i], node.Content[i+1]
		name := strings.TrimPrefix(path+"."+key.Value, ".")
		prop, ok := props[key.Value].(map[string]any)
		if !ok {
			t.Errorf("values.yaml: %s is not in values.schema.json", name)
			continue
		}
		if d, _ := prop["description"].(string); d == "" && prop["properties"] == nil {
			t.Errorf("values.schema.json: %s has no description", name)
		}
		if _, section := prop["properties"]; section && value.Kind == yamlv3.MappingNode {
			checkDocumented(t, name, value, prop)
			continue
		}
		if strings.TrimSpace(key.HeadComment) == "" {
			t.Errorf("values.yaml: %s has no comment", name)
		}
	}
}
