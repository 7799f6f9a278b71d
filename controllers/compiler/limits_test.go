package compiler_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	"github.com/postwarden/postwarden/relay/snapshot"
)

func TestLimitsTakeTheCredentialsThenTheDomainsThenTheBuiltInValue(t *testing.T) {
	hour := &metav1.Duration{Duration: time.Hour}
	for name, tc := range map[string]struct {
		cred, domain *relayv1alpha1.SendingLimits
		want         snapshot.Limits
	}{
		"nothing set: the built-in defaults": {nil, nil, snapshot.Limits{MessagesPerWindow: 500, WindowSeconds: 600,
			MessagesPerDay: 2500, RecipientsPerMessage: 100, RecipientsPerDay: 10000}},
		"the domain's defaults": {nil, &relayv1alpha1.SendingLimits{MessagesPerWindow: 50, Window: hour, RecipientsPerDay: 20},
			snapshot.Limits{MessagesPerWindow: 50, WindowSeconds: 3600, MessagesPerDay: 2500, RecipientsPerMessage: 100, RecipientsPerDay: 20}},
		"the credential's own win, -1 is unlimited": {
			&relayv1alpha1.SendingLimits{MessagesPerWindow: 7, MessagesPerDay: -1},
			&relayv1alpha1.SendingLimits{MessagesPerWindow: 50, Window: hour, MessagesPerDay: 100, RecipientsPerMessage: -1},
			snapshot.Limits{MessagesPerWindow: 7, WindowSeconds: 3600, RecipientsPerDay: 10000}},
		"an unlimited window has no length": {&relayv1alpha1.SendingLimits{MessagesPerWindow: -1}, nil,
			snapshot.Limits{MessagesPerDay: 2500, RecipientsPerMessage: 100, RecipientsPerDay: 10000}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := compiler.ResolveLimits(tc.cred, tc.domain); *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
}
