package controllers

// Labels and annotations the operator puts on what it creates.
const (
	// LabelCredential marks a credential Secret; its value is the SMTPCredential's name.
	LabelCredential = "relay.postwarden.dev/credential"
	// AnnotationUsername, AnnotationPasswordHash and AnnotationRotationToken are written
	// once, with the credential Secret: the username, the password's hash (the only form
	// in which the operator keeps it), and the spec.rotationToken it was issued for.
	AnnotationUsername      = "relay.postwarden.dev/username"
	AnnotationPasswordHash  = "relay.postwarden.dev/password-hash"
	AnnotationRotationToken = "relay.postwarden.dev/rotation-token"
	// LabelLogin marks a login record (see smtpcredential_login.go) in the operator's
	// namespace; AnnotationIssueID ties a record to the credential Secret issued with it,
	// and AnnotationCredential names the SMTPCredential (namespace/name).
	LabelLogin           = "relay.postwarden.dev/login"
	AnnotationIssueID    = "relay.postwarden.dev/issue-id"
	AnnotationCredential = "relay.postwarden.dev/credential"

	labelManagedBy = "app.kubernetes.io/managed-by"
	managerName    = "postwarden-operator"
	fieldOwner     = "postwarden-operator"

	// Field index names.
	indexCredentialSecret   = "postwarden.secretName"
	indexCredentialUsername = "postwarden.status.username"
	indexCredentialDomain   = "postwarden.spec.mailDomainRef"
	indexTLSPolicyCASecret  = "postwarden.spec.caBundleSecretRef"
	indexMailDomainSecret   = "postwarden.spec.auth.secretRef"

	// configKey is the one request every config-relevant event maps to.
	configKey = "relay-config"
)
