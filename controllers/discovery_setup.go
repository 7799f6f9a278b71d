package controllers

import (
	"github.com/postwarden/postwarden/controllers/discovery"
)

// discoveryOptions are the settings of the discovery loop (controllers/discovery), taken
// from the operator's: that package reads nothing of OperatorOptions itself.
func discoveryOptions(opts OperatorOptions) discovery.Options {
	return discovery.Options{
		Namespace:     opts.Namespace,
		MergeInterval: opts.DiscoveryMergeInterval,
		GCAfter:       opts.DiscoveryGCAfter,
		Clock:         opts.Clock,

		ReportRelay:       opts.ReportRelay,
		ReportServerName:  opts.reportServerName(),
		ReportSecret:      ReportSecretName,
		CertificateSecret: opts.certificateSecretName(),

		ManagerName: managerName,
		FieldOwner:  fieldOwner,
		Labels:      map[string]string{labelManagedBy: managerName},
	}
}
