package snapshot

import (
	"strings"
	"testing"
)

func TestDeliveryEventsValidation(t *testing.T) {
	tests := map[string]struct {
		hook *Webhook
		want string // "" when valid
	}{
		"an https URL with a key and all events is valid": {&Webhook{URL: "https://hooks.example.com/mail", SecretName: "hook"}, ""},
		"a list of known event types is valid":            {&Webhook{URL: "https://h.example/", SecretName: "hook", Events: []string{EventBounced, EventExpired}}, ""},
		"plain http is refused":                           {&Webhook{URL: "http://hooks.example.com/", SecretName: "hook"}, "is not an https:// URL"},
		"a URL without a host is refused":                 {&Webhook{URL: "https:///path", SecretName: "hook"}, "is not an https:// URL"},
		"a bad Secret name is refused":                    {&Webhook{URL: "https://h.example/", SecretName: "Not_A_Name"}, "is not a Secret name"},
		"an unknown event type is refused":                {&Webhook{URL: "https://h.example/", SecretName: "hook", Events: []string{"opened"}}, `delivery event type "opened"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Domain{Name: "example.com", DeliveryEvents: tc.hook}
			err := d.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
