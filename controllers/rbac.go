package controllers

// The operator's permissions. controller-gen turns these markers into
// config/rbac/role.yaml: a ClusterRole for what lives in tenant namespaces, and a Role
// in postwarden-system (the default --namespace) for what only the operator namespace
// holds. Deploying to another namespace means changing the Role's namespace there.
//
// smtpcredentials/finalizers: the credential Secret's owner reference blocks owner
// deletion, which clusters with OwnerReferencesPermissionEnforcement check.
//
// ConfigMaps: everything lives in the operator namespace (the discovery state of every
// policy, the relays' observations and their acknowledgements, the domain claims), so
// writing them is granted there only. Cluster-wide, only get: to carry over, once, the
// discovery state that earlier releases kept in each policy's namespace. Tenants' own
// ConfigMaps are never written.
//
// Secrets: cluster-wide get/list/watch (metadata watch; CA bundles read on demand),
// create and delete (credential Secrets, issued once and replaced by delete-and-create,
// never updated). Updating Secrets is allowed only in the operator namespace, for the
// relay config shards. Leases there serve relay status and leader election, whose
// core/v1 Events are recorded there too.
//
// +kubebuilder:rbac:groups=relay.postwarden.dev,resources=maildomains;smtpcredentials;discoverypolicies;tlsdeliverypolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=relay.postwarden.dev,resources=maildomains/status;smtpcredentials/status;discoverypolicies/status;tlsdeliverypolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=relay.postwarden.dev,resources=smtpcredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete,namespace=postwarden-system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=update;patch,namespace=postwarden-system
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch,namespace=postwarden-system
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch,namespace=postwarden-system
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch,namespace=postwarden-system
