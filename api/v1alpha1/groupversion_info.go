// Package v1alpha1 holds the Postwarden API: MailDomain, SMTPCredential, DiscoveryPolicy
// and TLSDeliveryPolicy, in the group relay.postwarden.dev.
//
// +kubebuilder:object:generate=true
// +groupName=relay.postwarden.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "relay.postwarden.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
